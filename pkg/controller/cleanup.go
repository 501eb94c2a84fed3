package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/cri"
	"github.com/netplug/netplug/pkg/metrics"
	"github.com/netplug/netplug/pkg/status"
)

// cleanupOrphan DELs every interface netplug plugged into a pod that no longer exists. Multus
// tears down only what it attached at pod creation, so without this the IPAM allocations of
// hot-plugged interfaces would leak.
func (c *Controller) cleanupOrphan(ctx context.Context, uid types.UID) error {
	logger := klog.FromContext(ctx)
	if objs, _ := c.podInformer.GetIndexer().ByIndex(uidIndex, string(uid)); len(objs) > 0 {
		return nil // still there (a late duplicate event); its own reconcile owns it
	}
	listing, err := c.checkpoints.List(string(uid))
	if err != nil {
		return err
	}
	entries := listing.Entries
	err = c.cleanupEntries(ctx, entries)
	if err != nil && strings.Contains(err.Error(), podNotFoundByMultus) {
		// Multus's /delegate DEL needs the pod object, and it is gone (netplug's finalizer was
		// removed by hand, or the pod predates it). Retrying cannot help; the next start retries.
		logger.Error(err, "Cannot release interfaces of a deleted pod: Multus needs the pod object; their IPAM allocations stay until released by hand")
		return nil
	}
	return err
}

// podNotFoundByMultus is the Multus daemon's error when a DEL names a pod the API does not have.
const podNotFoundByMultus = "pod not found during Multus GetPod"

// cleanupEntries DELs each checkpointed interface with the sandbox, netns and config of its ADD.
func (c *Controller) cleanupEntries(ctx context.Context, entries []checkpoint.Entry) error {
	logger := klog.FromContext(ctx)
	var failed int
	var lastErr error
	for _, e := range entries {
		err := c.delegate.Del(ctx, requestFor(e))
		if err != nil {
			failed, lastErr = failed+1, err
			metrics.Failures.WithLabelValues(ReasonOrphanUnplugFailed).Inc()
			logger.Error(err, "Releasing an interface of a deleted pod", "podName", e.PodNamespace+"/"+e.PodName,
				"network", e.Namespace+"/"+e.Network, "interface", e.Interface)
			continue
		}
		if err := c.checkpoints.Delete(e.PodUID, e.Interface); err != nil {
			logger.Error(err, "Removing checkpoint", "interface", e.Interface)
		}
		logger.Info("Released interface of a deleted pod", "podName", e.PodNamespace+"/"+e.PodName,
			"network", e.Namespace+"/"+e.Network, "interface", e.Interface)
	}
	if failed > 0 {
		return fmt.Errorf("releasing %d of %d interfaces failed, last: %w", failed, len(entries), lastErr)
	}
	return nil
}

// release DELs what netplug plugged into a terminating pod once its sandbox has stopped, then
// drops the finalizer that kept the pod object for this.
func (c *Controller) release(ctx context.Context, pod *corev1.Pod) error {
	if !status.HasFinalizer(pod) {
		return nil
	}
	listing, err := c.checkpoints.List(string(pod.UID))
	if err != nil {
		return err
	}
	entries := listing.Entries
	if len(entries) > 0 {
		// Interfaces stay usable during the grace period; the update that reports the stopped
		// sandbox (or the backoff) brings the pod back here.
		if _, err := c.runtime.PodSandbox(ctx, string(pod.UID)); err == nil {
			return requeueError{"pod is terminating; waiting for its sandbox to stop"}
		} else if !errors.Is(err, cri.ErrNoReadySandbox) {
			return err
		}
		if err := c.cleanupEntries(ctx, entries); err != nil {
			return err
		}
	}
	if err := c.status.RemoveFinalizer(ctx, pod); err != nil {
		return err
	}
	c.setAttached(pod.UID, 0)
	return nil
}
