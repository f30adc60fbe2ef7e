package main

import (
	"context"
	"encoding/binary"
	"log"
	"net"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// runLoadBalancerAllocator gives every LoadBalancer Service an address from the pool;
// kube-proxy then makes the address answer.
func runLoadBalancerAllocator(ctx context.Context, client kubernetes.Interface, pool *net.IPNet) {
	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Core().V1().Services()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(o any) {
		if key, err := cache.MetaNamespaceKeyFunc(o); err == nil {
			queue.Add(key)
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, o any) { enqueue(o) },
	})
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return
	}
	go func() { <-ctx.Done(); queue.ShutDown() }()
	for {
		key, quit := queue.Get()
		if quit {
			return
		}
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		svc, err := inf.Lister().Services(ns).Get(name)
		if err == nil && svc.Spec.Type == corev1.ServiceTypeLoadBalancer && needsAddress(svc, pool) {
			used := map[string]bool{}
			all, _ := inf.Lister().List(labels.Everything())
			for _, s := range all {
				if s.Namespace == svc.Namespace && s.Name == svc.Name {
					continue // its own address may be given again
				}
				for _, in := range s.Status.LoadBalancer.Ingress {
					used[in.IP] = true
				}
			}
			ip := nextFree(pool, used, svc.Spec.LoadBalancerIP)
			if len(svc.Status.LoadBalancer.Ingress) > 0 && used[svc.Spec.LoadBalancerIP] {
				ip = svc.Status.LoadBalancer.Ingress[0].IP // asked for a taken address: keep its own
			}
			if ip == "" {
				log.Printf("load balancer pool %s is exhausted", pool)
			} else {
				s := svc.DeepCopy()
				vip := corev1.LoadBalancerIPModeVIP
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip, IPMode: &vip}}
				if _, err := client.CoreV1().Services(ns).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil {
					log.Printf("service %s: %v", key, err)
					queue.AddRateLimited(key)
					queue.Done(key)
					continue
				}
			}
		}
		queue.Forget(key)
		queue.Done(key)
	}
}

// needsAddress: no address yet, or spec.loadBalancerIP asks for another one the pool can
// give (a changed request is honoured, as MetalLB does). A request the pool cannot meet
// gets the lowest free address instead, which the Service owner can see differs.
func needsAddress(svc *corev1.Service, pool *net.IPNet) bool {
	ingress := svc.Status.LoadBalancer.Ingress
	if len(ingress) == 0 {
		return true
	}
	requested := net.ParseIP(svc.Spec.LoadBalancerIP)
	return requested != nil && pool.Contains(requested) && ingress[0].IP != requested.String()
}

// nextFree: the requested address when it is in the pool and free, else the lowest free one.
func nextFree(pool *net.IPNet, used map[string]bool, requested string) string {
	if ip := net.ParseIP(requested); ip != nil && pool.Contains(ip) && !used[ip.String()] {
		return ip.String()
	}
	base := binary.BigEndian.Uint32(pool.IP.To4())
	ones, bits := pool.Mask.Size()
	size := uint32(1) << uint(bits-ones)
	for i := uint32(1); i < size-1; i++ {
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, base+i)
		if !used[ip.String()] {
			return ip.String()
		}
	}
	return ""
}
