package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/cri"
	"github.com/netplug/netplug/pkg/executor"
	"github.com/netplug/netplug/pkg/podwriter"
)

// releaseTerminating DELs what netplug plugged into a terminating pod once its sandbox has
// stopped, then drops the finalizer that kept the pod object for this. The lifecycle is
// bounded: FinalizerTimeout after the pod's deletion deadline the finalizer goes anyway, with a
// Warning, and the node-local records stay for a later clean-up.
func (c *Controller) releaseTerminating(ctx context.Context, pod *corev1.Pod) error {
	// network-status of a terminating pod is not rewritten: it goes with the pod. Records without
	// the finalizer (it could not be written) are released all the same while the pod is there.
	if _, err := c.releasePod(ctx, pod); err != nil {
		return err
	}
	if !podwriter.HasFinalizer(pod) {
		return nil
	}
	return c.writer.RemoveFinalizer(ctx, pod)
}

// releaseCompleted releases a pod that ended (Succeeded or Failed) and is never deleted: its
// sandbox has stopped, and its hot-plugged addresses would stay allocated for as long as the
// pod object lives. Its network-status drops the released interfaces.
func (c *Controller) releaseCompleted(ctx context.Context, pod *corev1.Pod) error {
	entries, err := c.listRecords(pod)
	if err != nil {
		return err
	}
	if len(entries) == 0 && !podwriter.HasFinalizer(pod) {
		return nil
	}
	released, err := c.releasePod(ctx, pod)
	if err != nil {
		return err
	}
	u := podwriter.Update{ReleaseFinalizer: true}
	for _, iface := range released {
		u.Changes = append(u.Changes, podwriter.Change{Interface: iface})
	}
	written, err := c.writer.Apply(ctx, pod, u)
	if err != nil {
		c.warn(pod, ReasonStatusWriteFailed, "%v", err)
		return err
	}
	c.rememberWrite(written)
	return nil
}

// releasePod releases every record of a pod whose sandbox is stopping or stopped. It returns
// the interfaces released. An error means: not yet (the sandbox still runs, or a DEL failed
// before the deadline).
func (c *Controller) releasePod(ctx context.Context, pod *corev1.Pod) ([]string, error) {
	entries, err := c.listRecords(pod)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, nil
	}
	pastDeadline := c.pastDeadline(pod)
	if nics, rest := splitDevices(entries); len(nics) > 0 && len(rest) < len(entries) && !pastDeadline {
		// Device-pool NICs first, while the sandbox still exists (see splitDevices).
		released, err := c.releaseEntries(ctx, pod, nics)
		if err != nil {
			return nil, c.byDeadline(pod, err)
		}
		if len(rest) == 0 {
			return released, nil
		}
		entries = rest
	}
	if !pastDeadline {
		// Interfaces stay usable during the grace period; the update that reports the stopped
		// sandbox (or the backoff) brings the pod back here.
		if _, err := c.runtime.PodSandbox(ctx, string(pod.UID)); err == nil {
			return nil, c.byDeadline(pod, requeueError{reason: "waiting for the pod's sandbox to stop"})
		} else if !errors.Is(err, cri.ErrNoReadySandbox) {
			return nil, err
		}
	}
	released, failures := c.releaseEntries(ctx, pod, entries)
	c.setAttached(pod.UID, len(entries)-len(released))
	if failures == nil {
		return released, nil
	}
	if !pastDeadline {
		return nil, c.byDeadline(pod, failures)
	}
	c.warn(pod, ReasonReleaseDeadline, "the finalizer %s is removed %s after the pod's deletion deadline without releasing every interface (%v); their records stay on node %s for a later clean-up",
		podwriter.Finalizer, c.opts.FinalizerTimeout, failures, c.opts.NodeName)
	return released, nil
}

// retryByError is a failure that must be retried by a point in time at the latest, whatever the
// backoff: a release failing before its deadline is tried again when the deadline comes.
type retryByError struct {
	err error
	by  time.Time
}

func (e retryByError) Error() string { return e.err.Error() }
func (e retryByError) Unwrap() error { return e.err }

// byDeadline makes err come back at the pod's release deadline at the latest.
func (c *Controller) byDeadline(pod *corev1.Pod, err error) error {
	if pod.DeletionTimestamp == nil {
		return err
	}
	return retryByError{err: err, by: pod.DeletionTimestamp.Add(c.opts.FinalizerTimeout)}
}

func (c *Controller) pastDeadline(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp == nil {
		return false // a completed pod has no deadline: its release is retried until it works
	}
	return c.opts.Now().After(pod.DeletionTimestamp.Add(c.opts.FinalizerTimeout))
}

// releaseEntries releases each record, with an event on the pod for each.
func (c *Controller) releaseEntries(ctx context.Context, pod *corev1.Pod, entries []checkpoint.Entry) ([]string, error) {
	var released []string
	var errs []error
	for _, e := range entries {
		o := c.exec.Release(ctx, e)
		if !o.OK() {
			errs = append(errs, o.Failure)
			c.warn(pod, ReasonOrphanUnplugFailed, "releasing %s/%s from %s: %s: %v", e.Namespace, e.Network, e.Interface, o.Failure.Kind, o.Failure.Err)
			continue
		}
		released = append(released, e.Interface)
		if e.Origin == checkpoint.OriginDevice || e.Device != nil {
			c.movedOut(pod, e, o)
		} else if !e.Adopted {
			c.event(pod, corev1.EventTypeNormal, ReasonReleased, "released %s/%s from %s", e.Namespace, e.Network, e.Interface)
		}
	}
	return released, errors.Join(errs...)
}

// releaseOrphan DELs every interface netplug plugged into a pod that no longer exists. Multus
// tears down only what it attached at pod creation, so without this the IPAM allocations of
// hot-plugged interfaces would leak.
func (c *Controller) releaseOrphan(ctx context.Context, uid types.UID) error {
	logger := klog.FromContext(ctx)
	if c.podExists(uid) {
		return nil // still there (a late duplicate event); its own reconcile owns it
	}
	listing, err := c.checkpoints.List(string(uid))
	if err != nil {
		return err
	}
	for _, q := range listing.Quarantined {
		logger.Error(q.Err, "Checkpoint of a deleted pod set aside", "file", q.File)
	}
	var failed []error
	podGone := false
	for _, e := range listing.Entries {
		o := c.exec.Release(ctx, e)
		if o.OK() {
			c.movedOut(nil, e, o)
			logger.Info("Released interface of a deleted pod", "podName", e.PodNamespace+"/"+e.PodName,
				"network", e.Namespace+"/"+e.Network, "interface", e.Interface)
			continue
		}
		podGone = podGone || o.Failure.Kind == executor.KindPodGone
		logger.Error(o.Failure, "Releasing an interface of a deleted pod", "podName", e.PodNamespace+"/"+e.PodName,
			"network", e.Namespace+"/"+e.Network, "interface", e.Interface)
		failed = append(failed, o.Failure)
	}
	if len(failed) == 0 {
		return nil
	}
	if podGone {
		// Multus's /delegate DEL needs the pod object, and it is gone (the finalizer was
		// removed by hand or after its deadline). Retrying cannot help; the next start retries.
		logger.Error(errors.Join(failed...), "Cannot release interfaces of a deleted pod: Multus needs the pod object; their IPAM allocations stay until released by hand")
		return nil
	}
	return fmt.Errorf("releasing %d of %d interfaces failed: %w", len(failed), len(listing.Entries), errors.Join(failed...))
}
