// Package sweep frees pods that no netplug instance will ever release: pods bound to a Node
// that no longer exists keep netplug's finalizer forever otherwise (PodGC's force delete does
// not bypass finalizers, so StatefulSets cannot recreate them and namespaces hang). One
// instance in the cluster, elected with a Lease, sweeps.
package sweep

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/podwriter"
)

// ReasonNodeGone is the Warning on a pod whose finalizer the sweep removed.
const ReasonNodeGone = "NodeGone"

// FinalizerRemover removes netplug's finalizer from one pod (podwriter.Writer).
type FinalizerRemover interface {
	RemoveFinalizer(ctx context.Context, pod *corev1.Pod) error
}

// Sweeper removes netplug's finalizer from pods of deleted Nodes.
type Sweeper struct {
	Kube     kubernetes.Interface
	Writer   FinalizerRemover
	Recorder record.EventRecorder
}

// Sweep does one pass: it lists the Nodes, then the pods page by page, and frees every pod that
// carries netplug's finalizer and is bound to a Node that is not there. It returns how many.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	nodes, err := s.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("listing nodes: %w", err)
	}
	exists := make(map[string]bool, len(nodes.Items))
	for _, n := range nodes.Items {
		exists[n.Name] = true
	}
	freed := 0
	opts := metav1.ListOptions{Limit: 500, FieldSelector: notOnNodes(nodes.Items)}
	for {
		pods, err := s.Kube.CoreV1().Pods("").List(ctx, opts)
		if err != nil {
			return freed, fmt.Errorf("listing pods: %w", err)
		}
		for i := range pods.Items {
			pod := &pods.Items[i]
			if pod.Spec.NodeName == "" || exists[pod.Spec.NodeName] || !podwriter.HasFinalizer(pod) {
				continue
			}
			if err := s.Writer.RemoveFinalizer(ctx, pod); err != nil {
				klog.FromContext(ctx).Error(err, "Freeing a pod of a deleted node", "pod", klog.KObj(pod), "node", pod.Spec.NodeName)
				continue
			}
			freed++
			s.Recorder.Eventf(pod, corev1.EventTypeWarning, ReasonNodeGone,
				"node %s no longer exists: finalizer %s removed without releasing its hot-plugged interfaces", pod.Spec.NodeName, podwriter.Finalizer)
		}
		if pods.Continue == "" {
			return freed, nil
		}
		opts.Continue = pods.Continue
	}
}

// maxSelectorNodes bounds the nodes the pod list's field selector names; a larger cluster lists
// every pod (page by page) and filters here.
const maxSelectorNodes = 100

// notOnNodes is the field selector of the pods bound to none of nodes: the API server does the
// filtering, so a sweep of a cluster of thousands of pods costs netplug a few bytes instead of
// every pod object. "" (no selector) past maxSelectorNodes.
func notOnNodes(nodes []corev1.Node) string {
	if len(nodes) > maxSelectorNodes {
		return ""
	}
	terms := []fields.Selector{fields.OneTermNotEqualSelector("spec.nodeName", "")}
	for _, n := range nodes {
		terms = append(terms, fields.OneTermNotEqualSelector("spec.nodeName", n.Name))
	}
	return fields.AndSelectors(terms...).String()
}

// Run sweeps every interval while this instance holds the Lease namespace/name, and returns
// when ctx is done.
func (s *Sweeper) Run(ctx context.Context, namespace, name, identity string, interval time.Duration) {
	logger := klog.FromContext(ctx).WithName("sweep")
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name},
		Client:     s.Kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true, Name: name,
		LeaseDuration: 30 * time.Second, RenewDeadline: 20 * time.Second, RetryPeriod: 5 * time.Second,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				logger.Info("Leading the sweep of pods of deleted nodes", "identity", identity)
				for {
					if n, err := s.Sweep(ctx); err != nil {
						logger.Error(err, "Sweep failed")
					} else if n > 0 {
						logger.Info("Freed pods of deleted nodes", "count", n)
					}
					select {
					case <-ctx.Done():
						return
					case <-time.After(interval):
					}
				}
			},
			OnStoppedLeading: func() { logger.V(2).Info("No longer leading the sweep") },
		},
	})
}
