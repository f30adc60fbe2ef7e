package main

import (
	"context"
	"log"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// statusLoop writes the pod's status when it changes (and re-checks every 2 s).
func (p *podRuntime) statusLoop() {
	var last *corev1.PodStatus
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.dirty:
		case <-tick.C:
		}
		st := p.computeStatus()
		if last != nil && reflect.DeepEqual(*last, st) {
			continue
		}
		if err := p.writeStatus(st); err != nil {
			log.Printf("%s/%s: status: %v", p.ns, p.name, err)
			continue
		}
		last = &st
	}
}

func (p *podRuntime) writeStatus(st corev1.PodStatus) error {
	pods := p.a.client.CoreV1().Pods(p.ns)
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := pods.Get(context.Background(), p.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != p.uid || cur.DeletionTimestamp != nil && p.ctx.Err() != nil {
			return nil
		}
		keepTransitions(&cur.Status, &st)
		// The API server sets the QoS class at creation and never lets it change.
		st.QOSClass = cur.Status.QOSClass
		cur.Status = st
		_, err = pods.UpdateStatus(context.Background(), cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		return err
	}
	return nil
}

// keepTransitions keeps lastTransitionTime for conditions whose status did not change.
func keepTransitions(old, next *corev1.PodStatus) {
	for i := range next.Conditions {
		for _, o := range old.Conditions {
			if o.Type == next.Conditions[i].Type && o.Status == next.Conditions[i].Status {
				next.Conditions[i].LastTransitionTime = o.LastTransitionTime
			}
		}
	}
}

func (p *podRuntime) computeStatus() corev1.PodStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	pod := p.pod
	now := metav1.Now()
	st := corev1.PodStatus{
		HostIP:    p.a.cfg.nodeIP.String(),
		HostIPs:   []corev1.HostIP{{IP: p.a.cfg.nodeIP.String()}},
		StartTime: &metav1.Time{Time: pod.CreationTimestamp.Time},
	}
	if p.ip != nil {
		st.PodIP = p.ip.String()
		st.PodIPs = []corev1.PodIP{{IP: p.ip.String()}}
	}
	allReady, anyRunning, allStarted := len(p.containers) > 0, false, len(p.containers) > 0
	allDone, anyFailed := len(p.containers) > 0, false
	for _, c := range p.containers {
		cs := corev1.ContainerStatus{
			Name:                 c.spec.Name,
			Image:                c.spec.Image,
			ImageID:              "testbed://" + c.binary,
			ContainerID:          "testbed://" + string(p.uid) + "/" + c.spec.Name,
			RestartCount:         c.restarts,
			Ready:                c.ready && c.running,
			Started:              &c.running,
			LastTerminationState: corev1.ContainerState{Terminated: nil},
		}
		started := c.running
		cs.Started = &started
		switch {
		case c.running:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: c.started}
			anyRunning = true
			allDone = false
			if c.restarts > 0 && c.last != nil {
				cs.LastTerminationState.Terminated = c.last
			}
		case c.waiting != nil:
			cs.State.Waiting = c.waiting
			allDone, allStarted = false, false
			if c.last != nil {
				cs.LastTerminationState.Terminated = c.last
			}
		case c.last != nil:
			cs.State.Terminated = c.last
			if c.last.ExitCode != 0 {
				anyFailed = true
			}
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
			allDone, allStarted = false, false
		}
		if !cs.Ready {
			allReady = false
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	policy := pod.Spec.RestartPolicy
	switch {
	case allDone && policy != corev1.RestartPolicyAlways && anyFailed:
		st.Phase = corev1.PodFailed
	case allDone && policy != corev1.RestartPolicyAlways:
		st.Phase = corev1.PodSucceeded
	case anyRunning || (allStarted && p.ip != nil):
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	if p.setupError != "" {
		st.Message = p.setupError
	}
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
		}
		return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: now}
	}
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodScheduled, true),
		cond(corev1.PodInitialized, true),
		cond(corev1.ContainersReady, allReady),
		cond(corev1.PodReady, allReady),
	}
	return st
}
