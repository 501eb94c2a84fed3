package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadutils "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/utils"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/cri"
	"github.com/netplug/netplug/pkg/metrics"
	"github.com/netplug/netplug/pkg/multus"
	"github.com/netplug/netplug/pkg/status"
)

var everything = labels.Everything()

// requeueError asks for a retry with backoff without logging a failure: the pod is not ready
// for us yet.
type requeueError struct{ reason string }

func (e requeueError) Error() string { return e.reason }

func isRequeue(err error) bool {
	var r requeueError
	return errors.As(err, &r)
}

// podRun is the state of one reconcile of one pod.
type podRun struct {
	pod     *corev1.Pod
	sandbox cri.Sandbox
	// entries are the pod's checkpoints by interface, for the current sandbox.
	entries map[string]checkpoint.Entry
	changes []status.Change
	failed  []string
	// unplugged are the interfaces DELeted in this run; their checkpoints, still marked in
	// flight, go once network-status no longer lists them.
	unplugged []string
}

func (c *Controller) reconcile(ctx context.Context, k key) error {
	logger := klog.FromContext(ctx)
	pod, err := c.pods.Pods(k.Namespace).Get(k.Name)
	if apierrors.IsNotFound(err) {
		return nil // the delete handler queues the cleanup by UID
	}
	if err != nil {
		return err
	}
	if pod.Spec.NodeName != c.opts.NodeName {
		return nil // never act on another node's pod
	}
	if pod.DeletionTimestamp != nil {
		return c.release(ctx, pod)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	annotation := pod.Annotations[nadv1.NetworkAttachmentAnnot]
	if pod.Spec.HostNetwork {
		if strings.TrimSpace(annotation) != "" {
			c.warn(pod, ReasonHostNetwork, "pod uses the host network: secondary networks cannot be plugged into it")
		}
		return nil
	}
	if c.staleCache(pod) {
		return requeueError{"informer cache older than netplug's last write"}
	}
	sel, err := attachment.ParseSelection(annotation, pod.Namespace)
	if err != nil {
		c.warn(pod, ReasonInvalidSelection, "%v; no interface was changed", err)
		return nil // only a new edit can fix it, and that edit enqueues the pod
	}
	statusEntries, err := attachment.ParseNetworkStatus(pod.Annotations[nadv1.NetworkStatusAnnot])
	if err != nil {
		c.warn(pod, ReasonInvalidStatus, "%v; no interface was changed", err)
		return nil
	}
	listing, err := c.checkpoints.List(string(pod.UID))
	entries := listing.Entries
	if err != nil {
		c.warn(pod, ReasonCheckpointFailed, "%v", err)
		return err
	}
	for _, p := range sel.Problems {
		c.warn(pod, p.Reason, "%s; nothing attached is removed until it is fixed", p.Error())
	}
	plan := planFor(sel, statusEntries, entries)
	if plan.Empty() && len(entries) == 0 {
		c.setAttached(pod.UID, 0)
		return nil // the common case costs no I/O beyond one directory read
	}
	// Multus writes network-status while it sets the sandbox up; the pod reports Running only
	// after that, so acting before would mistake Multus's own interfaces for missing ones.
	if pod.Status.Phase != corev1.PodRunning {
		logger.V(2).Info("Waiting for the pod to run", "phase", pod.Status.Phase)
		return nil // the pod's transition to Running enqueues it again
	}
	run := &podRun{pod: pod, entries: map[string]checkpoint.Entry{}}
	sandboxCtx, cancel := context.WithTimeout(ctx, time.Minute)
	run.sandbox, err = c.runtime.PodSandbox(sandboxCtx, string(pod.UID))
	cancel()
	if errors.Is(err, cri.ErrNoReadySandbox) {
		return requeueError{"pod has no ready sandbox yet"}
	}
	if errors.Is(err, cri.ErrHostNetwork) {
		c.warn(pod, ReasonHostNetwork, "pod sandbox uses the host network: secondary networks cannot be plugged into it")
		return nil
	}
	if err != nil {
		c.warn(pod, ReasonSandboxLookup, "finding the pod's network namespace: %v", err)
		return err
	}
	// Checkpoints of an older sandbox (the pod's sandbox was recreated) are unplugged from
	// that sandbox so their addresses are released; they are not attached to this one.
	var current []checkpoint.Entry
	for _, e := range entries {
		if e.SandboxID != run.sandbox.ID {
			c.releaseStale(ctx, pod, e)
			continue
		}
		current = append(current, e)
		run.entries[e.Interface] = e
	}
	plan = planFor(sel, statusEntries, current)
	if plan.Empty() {
		c.setAttached(pod.UID, len(current))
		return nil
	}
	logger.V(1).Info("Executing plan", "adds", len(plan.Adds), "removes", len(plan.Removes), "replugs", len(plan.Replugs))

	for _, a := range plan.Removes {
		if c.unplug(ctx, run, a) {
			c.event(pod, corev1.EventTypeNormal, ReasonUnplugged, "unplugged %s from %s", a.NetworkName(), a.Interface)
		}
	}
	for _, r := range plan.Replugs {
		if _, reason, err := c.resolve(pod, r.New); err != nil {
			c.failElement(run, r.New, elementError{reason, err})
			continue // keep the old interface rather than leave none
		}
		if c.unplug(ctx, run, r.Old) && c.plug(ctx, run, r.New) {
			c.event(pod, corev1.EventTypeNormal, ReasonReplugged, "replugged %s as %s", r.New.NetworkName(), r.New.Interface)
		}
	}
	for _, a := range plan.Adds {
		if c.plug(ctx, run, a) {
			c.event(pod, corev1.EventTypeNormal, ReasonPlugged, "plugged %s as %s", a.NetworkName(), a.Interface)
		}
	}

	if len(run.changes) > 0 {
		written, err := c.status.Apply(ctx, run.pod, run.changes)
		if err != nil {
			// The checkpoints stay in flight: the retry treats their interfaces as unknown
			// and replugs (or DELs again) what it still wants (or not), then writes it.
			c.warn(pod, ReasonStatusWriteFailed, "%v", err)
			return err
		}
		c.written.Store(pod.UID, lastWrite{written.ResourceVersion, written.Annotations[nadv1.NetworkStatusAnnot]})
	}
	c.settleCheckpoints(ctx, run)
	c.setAttached(pod.UID, len(run.entries))
	if len(run.failed) > 0 {
		return fmt.Errorf("%d of %d steps failed: %s", len(run.failed),
			len(plan.Adds)+len(plan.Removes)+len(plan.Replugs), strings.Join(run.failed, "; "))
	}
	return nil
}

// planFor names the selection's interfaces against what the pod has and diffs the two.
func planFor(sel attachment.Selection, statusEntries []nadv1.NetworkStatus, entries []checkpoint.Entry) attachment.Plan {
	records := make([]attachment.Record, 0, len(entries))
	for _, e := range entries {
		records = append(records, e.Record())
	}
	current := attachment.Current(statusEntries, records)
	desired := attachment.AssignInterfaces(sel.Attachments, current)
	return attachment.Diff(desired, current, len(sel.Problems) > 0)
}

// resolve finds the NAD of a, applies namespace isolation and returns its CNI config.
func (c *Controller) resolve(pod *corev1.Pod, a attachment.Attachment) ([]byte, string, error) {
	if c.opts.NamespaceIsolation && a.Namespace != pod.Namespace && !c.opts.IsGlobalNamespace(a.Namespace) {
		return nil, ReasonIsolation, fmt.Errorf("network %s is in another namespace and namespace isolation is on", a.NetworkName())
	}
	nad, err := c.nads.NetworkAttachmentDefinitions(a.Namespace).Get(a.Network)
	if apierrors.IsNotFound(err) {
		return nil, ReasonNetworkNotFound, fmt.Errorf("NetworkAttachmentDefinition %s not found", a.NetworkName())
	}
	if err != nil {
		return nil, ReasonNetworkNotFound, fmt.Errorf("looking up NetworkAttachmentDefinition %s: %w", a.NetworkName(), err)
	}
	if strings.TrimSpace(nad.Spec.Config) == "" {
		return nil, ReasonInvalidNetwork, fmt.Errorf("NetworkAttachmentDefinition %s has no spec.config; netplug needs the CNI config inline", a.NetworkName())
	}
	config, err := nadutils.GetCNIConfigFromSpec(nad.Spec.Config, a.Network)
	if err != nil {
		return nil, ReasonInvalidNetwork, fmt.Errorf("NetworkAttachmentDefinition %s: %w", a.NetworkName(), err)
	}
	return config, "", nil
}

// elementError carries the event reason of a failed element.
type elementError struct {
	reason string
	err    error
}

func (e elementError) Error() string { return e.err.Error() }
func (e elementError) Unwrap() error { return e.err }

func (c *Controller) failElement(run *podRun, a attachment.Attachment, err error) {
	reason := ReasonPlugFailed
	var ee elementError
	if errors.As(err, &ee) {
		reason = ee.reason
	}
	c.warn(run.pod, reason, "%s as %s: %v", a.NetworkName(), a.Interface, err)
	if reason == ReasonIsolation || reason == ReasonInvalidNetwork {
		return // only an edit of the annotation, the config or the NAD fixes it, and each enqueues the pod
	}
	run.failed = append(run.failed, fmt.Sprintf("%s: %v", a, err))
}

// plug ADDs a. The checkpoint is written first, in flight: if the ADD fails or netplug dies
// before network-status records its result, the next reconcile finds the record uncertain and
// replugs instead of adding a duplicate or trusting an older entry for the same interface.
func (c *Controller) plug(ctx context.Context, run *podRun, a attachment.Attachment) bool {
	config, reason, err := c.resolve(run.pod, a)
	if err != nil {
		c.failElement(run, a, elementError{reason, err})
		return false
	}
	if !status.HasFinalizer(run.pod) {
		pod, err := c.status.AddFinalizer(ctx, run.pod)
		if err != nil {
			c.failElement(run, a, elementError{ReasonStatusWriteFailed, err})
			return false
		}
		run.pod = pod
	}
	entry := checkpoint.Entry{
		PodNamespace: run.pod.Namespace, PodName: run.pod.Name, PodUID: string(run.pod.UID),
		SandboxID: run.sandbox.ID, NetNS: run.sandbox.NetNS,
		Namespace: a.Namespace, Network: a.Network, Interface: a.Interface,
		Config: config, Attributes: checkpoint.AttributesFrom(a.Attributes), InFlight: checkpoint.InFlightAdd,
	}
	if err := c.checkpoints.Save(entry); err != nil {
		c.failElement(run, a, elementError{ReasonCheckpointFailed, err})
		return false
	}
	run.entries[a.Interface] = entry
	start := time.Now()
	result, err := c.delegate.Add(ctx, requestFor(entry))
	observePlug(metrics.OperationAdd, start, err)
	if err != nil {
		// The checkpoint stays: the retry DELs whatever the failed ADD left before adding.
		c.failElement(run, a, fmt.Errorf("multus ADD: %w", err))
		return false
	}
	st := &nadv1.NetworkStatus{Name: a.NetworkName(), Interface: a.Interface}
	if statuses, err := nadutils.CreateNetworkStatuses(result, a.NetworkName(), false, nil); err == nil {
		for _, s := range statuses {
			if s.Interface == a.Interface {
				st = s
			}
		}
	}
	run.changes = append(run.changes, status.Change{Interface: a.Interface, Entry: st})
	klog.FromContext(ctx).Info("Plugged", "network", a.NetworkName(), "interface", a.Interface, "ips", st.IPs, "mac", st.Mac)
	return true
}

// settleCheckpoints records the run's outcome once network-status has it: the checkpoints of
// interfaces it unplugged (and did not plug again) are removed, and those it plugged are no
// longer in flight. Failing to is logged only: the interface then counts as uncertain and the
// next reconcile DELs or replugs it again.
func (c *Controller) settleCheckpoints(ctx context.Context, run *podRun) {
	for _, iface := range run.unplugged {
		entry, ok := run.entries[iface]
		if !ok || entry.InFlight != checkpoint.InFlightDel {
			continue // plugged again after the DEL
		}
		if err := c.checkpoints.Delete(entry.PodUID, iface); err != nil {
			klog.FromContext(ctx).Error(err, "Removing checkpoint", "interface", iface)
			continue
		}
		delete(run.entries, iface)
	}
	for _, change := range run.changes {
		entry, ok := run.entries[change.Interface]
		if change.Entry == nil || !ok || entry.InFlight != checkpoint.InFlightAdd {
			continue
		}
		entry.InFlight = ""
		if err := c.checkpoints.Save(entry); err != nil {
			klog.FromContext(ctx).Error(err, "Confirming checkpoint", "interface", change.Interface)
			continue
		}
		run.entries[change.Interface] = entry
	}
}

// unplug DELs a with the config, sandbox and interface it was added with when netplug added it,
// else with the NAD's current config. The checkpoint is marked in flight first: a DEL that
// fails or is cut short (controller or Multus killed) may have removed the link already, so
// until a DEL succeeds the interface counts as unknown and keeping it means a replug.
func (c *Controller) unplug(ctx context.Context, run *podRun, a attachment.Attachment) bool {
	entry, known := run.entries[a.Interface]
	if !known || entry.Namespace != a.Namespace || entry.Network != a.Network {
		config, reason, err := c.resolve(run.pod, a)
		if err != nil {
			c.warn(run.pod, ReasonUnplugFailed, "%s from %s: %v (%s); the interface is left in place", a.NetworkName(), a.Interface, err, reason)
			run.failed = append(run.failed, fmt.Sprintf("unplug %s: %v", a, err))
			return false
		}
		entry = checkpoint.Entry{
			PodNamespace: run.pod.Namespace, PodName: run.pod.Name, PodUID: string(run.pod.UID),
			SandboxID: run.sandbox.ID, NetNS: run.sandbox.NetNS,
			Namespace: a.Namespace, Network: a.Network, Interface: a.Interface, Config: config,
		}
	}
	if entry.InFlight != checkpoint.InFlightDel {
		entry.InFlight = checkpoint.InFlightDel
		if err := c.checkpoints.Save(entry); err != nil {
			c.warn(run.pod, ReasonUnplugFailed, "%s from %s: %v; the interface is left in place", a.NetworkName(), a.Interface, err)
			run.failed = append(run.failed, fmt.Sprintf("unplug %s: %v", a, err))
			return false
		}
		run.entries[a.Interface] = entry
	}
	start := time.Now()
	err := c.delegate.Del(ctx, requestFor(entry))
	observePlug(metrics.OperationDel, start, err)
	if err != nil {
		c.warn(run.pod, ReasonUnplugFailed, "%s from %s: multus DEL: %v", a.NetworkName(), a.Interface, err)
		run.failed = append(run.failed, fmt.Sprintf("unplug %s: %v", a, err))
		return false
	}
	run.unplugged = append(run.unplugged, a.Interface)
	// The removal is written even when the cached network-status does not list the interface:
	// the cache may lag a write that landed although its answer was lost (a timeout, a
	// restart). The patch is guarded by resourceVersion, so against a newer pod it conflicts,
	// is recomputed on the fresh one, and drops the entry; only then does the checkpoint go.
	run.changes = append(run.changes, status.Change{Interface: a.Interface})
	klog.FromContext(ctx).Info("Unplugged", "network", a.NetworkName(), "interface", a.Interface)
	return true
}

// releaseStale DELs an interface recorded against a sandbox the pod no longer runs in.
func (c *Controller) releaseStale(ctx context.Context, pod *corev1.Pod, e checkpoint.Entry) {
	logger := klog.FromContext(ctx).WithValues("interface", e.Interface, "sandbox", e.SandboxID)
	if err := c.delegate.Del(ctx, requestFor(e)); err != nil {
		logger.Error(err, "Releasing an interface of an old sandbox")
		c.warn(pod, ReasonOrphanUnplugFailed, "releasing %s/%s of an old sandbox: %v", e.Namespace, e.Network, err)
		return
	}
	if err := c.checkpoints.Delete(e.PodUID, e.Interface); err != nil {
		logger.Error(err, "Removing checkpoint")
		return
	}
	logger.Info("Released an interface of an old sandbox", "network", e.Namespace+"/"+e.Network)
}

func requestFor(e checkpoint.Entry) multus.Request {
	return multus.Request{
		SandboxID: e.SandboxID, NetNS: e.NetNS, IfName: e.Interface,
		PodNamespace: e.PodNamespace, PodName: e.PodName, PodUID: e.PodUID,
		Config: e.Config, IPs: e.Attributes.IPs, MAC: e.Attributes.MAC, CNIArgs: e.Attributes.CNIArgs,
	}
}

func observePlug(op string, start time.Time, err error) {
	result := metrics.ResultSuccess
	if err != nil {
		result = metrics.ResultError
	}
	metrics.PlugDuration.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
}

func (c *Controller) event(pod *corev1.Pod, eventType, reason, format string, args ...interface{}) {
	c.recorder.Eventf(pod, eventType, reason, format, args...)
}

// warn records a Warning event and counts the failure by reason.
func (c *Controller) warn(pod *corev1.Pod, reason, format string, args ...interface{}) {
	metrics.Failures.WithLabelValues(reason).Inc()
	c.recorder.Eventf(pod, corev1.EventTypeWarning, reason, format, args...)
}
