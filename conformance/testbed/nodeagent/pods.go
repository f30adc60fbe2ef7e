package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

type agent struct {
	cfg     config
	client  kubernetes.Interface
	images  images
	ipam    *ipam
	started metav1.Time
	self    string

	mu   sync.Mutex
	pods map[types.UID]*podRuntime
}

func newAgent(c config, client kubernetes.Interface, im images) *agent {
	self, err := os.Executable()
	if err != nil {
		log.Fatalf("own path: %v", err)
	}
	return &agent{
		cfg:     c,
		client:  client,
		images:  im,
		ipam:    newIPAM(c.podCIDR, c.nodeIP),
		started: metav1.Now(),
		self:    self,
		pods:    map[types.UID]*podRuntime{},
	}
}

// podRuntime is one pod's processes and network namespace.
type podRuntime struct {
	a      *agent
	uid    types.UID
	ns     string
	name   string
	netns  string
	veth   string
	dir    string
	ip     net.IP
	dirty  chan struct{}
	ctx    context.Context
	cancel context.CancelFunc

	mu          sync.Mutex
	pod         *corev1.Pod
	containers  []*containerRuntime
	setupError  string
	terminating bool
	done        chan struct{}
}

type containerRuntime struct {
	spec     corev1.Container
	binary   string
	logPath  string
	cmd      *exec.Cmd
	running  bool
	started  metav1.Time
	restarts int32
	ready    bool
	last     *corev1.ContainerStateTerminated
	waiting  *corev1.ContainerStateWaiting
	stopped  bool
}

func (a *agent) runPods(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(a.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.nodeName).String()
		}))
	inf := factory.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.sync(o.(*corev1.Pod)) },
		UpdateFunc: func(_, o any) { a.sync(o.(*corev1.Pod)) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				a.forget(p.UID)
			}
		},
	})
	factory.Start(ctx.Done())
	<-ctx.Done()
}

func (a *agent) sync(pod *corev1.Pod) {
	a.mu.Lock()
	p, known := a.pods[pod.UID]
	if !known {
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			a.mu.Unlock()
			if pod.DeletionTimestamp != nil {
				a.finalDelete(pod)
			}
			return
		}
		p = a.newPod(pod)
		a.pods[pod.UID] = p
		a.mu.Unlock()
		go p.run()
		return
	}
	a.mu.Unlock()
	p.mu.Lock()
	p.pod = pod
	terminate := pod.DeletionTimestamp != nil && !p.terminating
	if terminate {
		p.terminating = true
	}
	p.mu.Unlock()
	if terminate {
		go p.terminate(gracePeriod(pod))
	}
}

func gracePeriod(pod *corev1.Pod) time.Duration {
	if pod.DeletionGracePeriodSeconds != nil {
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// forget is for pods removed from the API without us (force deletion).
func (a *agent) forget(uid types.UID) {
	a.mu.Lock()
	p, ok := a.pods[uid]
	a.mu.Unlock()
	if !ok {
		return
	}
	p.mu.Lock()
	already := p.terminating
	p.terminating = true
	p.mu.Unlock()
	if !already {
		go p.terminate(2 * time.Second)
	}
}

func (a *agent) stopAll() {
	a.mu.Lock()
	var all []*podRuntime
	for _, p := range a.pods {
		all = append(all, p)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stopProcesses(2 * time.Second)
			p.cleanup()
		}()
	}
	wg.Wait()
}

func (a *agent) newPod(pod *corev1.Pod) *podRuntime {
	short := strings.ReplaceAll(string(pod.UID), "-", "")[:12]
	ctx, cancel := context.WithCancel(context.Background())
	return &podRuntime{
		a:      a,
		uid:    pod.UID,
		ns:     pod.Namespace,
		name:   pod.Name,
		netns:  "tbp-" + short,
		veth:   "vp" + short,
		dir:    filepath.Join(a.cfg.stateDir, "pods", string(pod.UID)),
		pod:    pod,
		dirty:  make(chan struct{}, 1),
		done:   make(chan struct{}),
		ctx:    ctx,
		cancel: cancel,
	}
}

func (p *podRuntime) markDirty() {
	select {
	case p.dirty <- struct{}{}:
	default:
	}
}

func (p *podRuntime) event(kind, reason, msg string) {
	now := metav1.Now()
	_, err := p.a.client.CoreV1().Events(p.ns).Create(context.Background(), &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: p.name + ".", Namespace: p.ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: p.ns, Name: p.name, UID: p.uid, APIVersion: "v1"},
		Type:           kind,
		Reason:         reason,
		Message:        msg,
		Source:         corev1.EventSource{Component: "gatehouse-testbed-nodeagent", Host: p.a.cfg.nodeName},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}, metav1.CreateOptions{})
	if err != nil {
		log.Printf("%s/%s: event %s: %v", p.ns, p.name, reason, err)
	}
}

// run sets the pod up, starts its containers and keeps its status current until it is
// terminated.
func (p *podRuntime) run() {
	go p.statusLoop()
	p.markDirty()
	pod := p.snapshot()

	// Images first: an unknown image leaves the pod Pending, and says why.
	var containers []*containerRuntime
	for _, c := range pod.Spec.Containers {
		cr := &containerRuntime{spec: c, logPath: filepath.Join(p.dir, "logs", c.Name+".log")}
		bin, err := p.a.images.binary(c.Image)
		if err != nil {
			cr.waiting = &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: err.Error()}
			p.event(corev1.EventTypeWarning, "Failed", err.Error())
		}
		cr.binary = bin
		containers = append(containers, cr)
	}
	p.mu.Lock()
	p.containers = containers
	p.mu.Unlock()
	for _, c := range containers {
		if c.waiting != nil {
			p.markDirty()
			return
		}
	}

	if err := p.setup(); err != nil {
		log.Printf("%s/%s: setup: %v", p.ns, p.name, err)
		p.mu.Lock()
		p.setupError = err.Error()
		for _, c := range p.containers {
			c.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		}
		p.mu.Unlock()
		p.event(corev1.EventTypeWarning, "FailedCreatePodSandBox", err.Error())
		p.markDirty()
		return
	}
	for _, c := range containers {
		go p.supervise(c)
		if c.spec.ReadinessProbe != nil {
			go p.probe(c)
		}
	}
}

func (p *podRuntime) snapshot() *corev1.Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pod.DeepCopy()
}

func (p *podRuntime) setup() error {
	ip, err := p.a.ipam.allocate()
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.ip = ip
	p.mu.Unlock()
	if err := os.MkdirAll(filepath.Join(p.dir, "logs"), 0o755); err != nil {
		return err
	}
	if err := podNetwork(p.netns, p.veth, p.a.cfg.bridge, ip, p.a.cfg.podCIDR, p.a.cfg.nodeIP); err != nil {
		return err
	}
	// Like a kubelet, wait for Secrets and ConfigMaps that do not exist yet.
	reported := false
	for {
		err := p.materializeVolumes()
		if err == nil {
			return nil
		}
		p.mu.Lock()
		for _, c := range p.containers {
			c.waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating", Message: err.Error()}
		}
		p.mu.Unlock()
		p.markDirty()
		if !reported {
			p.event(corev1.EventTypeWarning, "FailedMount", err.Error())
			reported = true
		}
		select {
		case <-p.ctx.Done():
			return p.ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// supervise runs one container, restarting it as the pod's restartPolicy says.
func (p *podRuntime) supervise(c *containerRuntime) {
	backoff := time.Second
	for {
		if p.ctx.Err() != nil {
			return
		}
		started := time.Now()
		exit, err := p.startAndWait(c)
		if p.ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Printf("%s/%s/%s: %v", p.ns, p.name, c.spec.Name, err)
		}
		policy := p.snapshot().Spec.RestartPolicy
		if policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && exit == 0) {
			p.markDirty()
			return
		}
		if time.Since(started) > 10*time.Second {
			backoff = time.Second
		}
		p.mu.Lock()
		c.restarts++
		c.waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: fmt.Sprintf("back-off %s restarting failed container", backoff)}
		p.mu.Unlock()
		p.markDirty()
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (p *podRuntime) startAndWait(c *containerRuntime) (int32, error) {
	pod := p.snapshot()
	argv, err := p.argv(c)
	if err != nil {
		return 127, err
	}
	env, err := p.env(pod, c.spec)
	if err != nil {
		p.mu.Lock()
		c.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
		p.mu.Unlock()
		p.markDirty()
		return 127, err
	}
	// $(VAR) in command and args expands from the container's environment, as the kubelet
	// does; $$ escapes a dollar.
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	for i := range argv {
		argv[i] = expandVars(argv[i], vars)
	}
	args := []string{"netns", "exec", p.netns, p.a.self, "exec-container"}
	for _, m := range c.spec.VolumeMounts {
		src := filepath.Join(p.dir, "volumes", m.Name)
		if m.SubPath != "" {
			src = filepath.Join(src, m.SubPath)
		}
		args = append(args, "--mount", src+"="+m.MountPath)
	}
	if c.spec.WorkingDir != "" {
		args = append(args, "--workdir", c.spec.WorkingDir)
	}
	args = append(args, "--")
	args = append(args, argv...)
	logFile, err := openLog(c.logPath)
	if err != nil {
		return 127, err
	}
	defer logFile.Close()
	cmd := exec.Command("ip", args...)
	cmd.Env = env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 127, err
	}
	p.mu.Lock()
	c.cmd = cmd
	c.running = true
	c.waiting = nil
	c.started = metav1.Now()
	c.ready = c.spec.ReadinessProbe == nil
	p.mu.Unlock()
	p.markDirty()

	err = cmd.Wait()
	logFile.Flush()
	code := int32(0)
	if ee, ok := err.(*exec.ExitError); ok {
		code = int32(ee.ExitCode())
		if code < 0 {
			code = 137
		}
	}
	p.mu.Lock()
	c.running = false
	c.ready = false
	c.last = &corev1.ContainerStateTerminated{
		ExitCode:   code,
		Reason:     map[bool]string{true: "Completed", false: "Error"}[code == 0],
		StartedAt:  c.started,
		FinishedAt: metav1.Now(),
	}
	p.mu.Unlock()
	p.markDirty()
	return code, nil
}

// argv: the container's command resolved against the image's binary. A command naming a
// program that exists on this host (a shell, say) runs as written; otherwise the first word
// is the image's own entrypoint and becomes the mapped binary.
func (p *podRuntime) argv(c *containerRuntime) ([]string, error) {
	cmd := c.spec.Command
	if len(cmd) > 0 && filepath.IsAbs(cmd[0]) && filepath.Base(cmd[0]) != filepath.Base(c.binary) {
		if _, err := os.Stat(cmd[0]); err == nil {
			return append(append([]string{}, cmd...), c.spec.Args...), nil
		}
	}
	argv := []string{c.binary}
	if len(cmd) > 1 {
		argv = append(argv, cmd[1:]...)
	}
	return append(argv, c.spec.Args...), nil
}

func expandVars(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if s[i] == '$' && i+1 < len(s) && s[i+1] == '(' {
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				name := s[i+2 : i+2+end]
				if v, ok := vars[name]; ok {
					b.WriteString(v)
					i += 2 + end
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (p *podRuntime) probe(c *containerRuntime) {
	pr := c.spec.ReadinessProbe
	period := time.Duration(max(pr.PeriodSeconds, 1)) * time.Second
	if pr.PeriodSeconds == 0 {
		period = 10 * time.Second
	}
	timeout := time.Duration(max(pr.TimeoutSeconds, 1)) * time.Second
	success, failure := max(pr.SuccessThreshold, 1), max(pr.FailureThreshold, 1)
	if pr.FailureThreshold == 0 {
		failure = 3
	}
	var ok, bad int32
	first := true
	for {
		p.mu.Lock()
		running, started, ip := c.running, c.started.Time, p.ip
		p.mu.Unlock()
		wait := period
		if first {
			wait = time.Duration(pr.InitialDelaySeconds) * time.Second
		}
		if running && time.Since(started) < time.Duration(pr.InitialDelaySeconds)*time.Second {
			wait = time.Duration(pr.InitialDelaySeconds)*time.Second - time.Since(started)
		}
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(wait):
		}
		first = false
		if !running {
			ok, bad = 0, 0
			continue
		}
		result := runProbe(pr.ProbeHandler, ip, c.spec, timeout)
		if result {
			ok, bad = ok+1, 0
		} else {
			ok, bad = 0, bad+1
		}
		p.mu.Lock()
		changed := false
		if ok >= success && !c.ready && c.running {
			c.ready, changed = true, true
		}
		if bad >= failure && c.ready {
			c.ready, changed = false, true
		}
		p.mu.Unlock()
		if changed {
			p.markDirty()
		}
	}
}

// terminate stops the containers (SIGTERM, then SIGKILL after the grace period), frees the
// pod's network and files, and completes the deletion as the kubelet does.
func (p *podRuntime) terminate(grace time.Duration) {
	p.stopProcesses(grace)
	p.cleanup()
	p.a.mu.Lock()
	delete(p.a.pods, p.uid)
	p.a.mu.Unlock()
	p.a.finalDelete(p.snapshot())
}

func (p *podRuntime) stopProcesses(grace time.Duration) {
	p.cancel()
	p.mu.Lock()
	var cmds []*exec.Cmd
	for _, c := range p.containers {
		c.stopped = true
		if c.running && c.cmd != nil && c.cmd.Process != nil {
			cmds = append(cmds, c.cmd)
		}
	}
	p.mu.Unlock()
	for _, cmd := range cmds {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for _, cmd := range cmds {
		for time.Now().Before(deadline) && syscall.Kill(cmd.Process.Pid, 0) == nil {
			time.Sleep(50 * time.Millisecond)
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// Anything else left in the pod's network namespace goes too.
	if out, err := exec.Command("ip", "netns", "pids", p.netns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

func (p *podRuntime) cleanup() {
	deletePodNetwork(p.netns, p.veth)
	p.mu.Lock()
	ip := p.ip
	p.mu.Unlock()
	if ip != nil {
		p.a.ipam.release(ip)
	}
	_ = os.RemoveAll(p.dir)
}

func (a *agent) finalDelete(pod *corev1.Pod) {
	err := a.client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To(int64(0)),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		log.Printf("%s/%s: final delete: %v", pod.Namespace, pod.Name, err)
	}
}
