package controller

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/metrics"
)

// cleanupOrphan DELs every interface netplug plugged into a pod that no longer exists. Multus
// tears down only what it attached at pod creation, so without this the IPAM allocations of
// hot-plugged interfaces would leak.
func (c *Controller) cleanupOrphan(ctx context.Context, uid types.UID) error {
	logger := klog.FromContext(ctx)
	if objs, _ := c.podInformer.GetIndexer().ByIndex(uidIndex, string(uid)); len(objs) > 0 {
		return nil // still there (a late duplicate event); its own reconcile owns it
	}
	entries, err := c.checkpoints.List(string(uid))
	if err != nil {
		return err
	}
	var failed int
	for _, e := range entries {
		err := c.delegate.Del(ctx, requestFor(e))
		if err != nil {
			failed++
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
		return fmt.Errorf("releasing %d of %d interfaces of deleted pod %s failed", failed, len(entries), uid)
	}
	return nil
}
