package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"

	nadutils "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/utils"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/executor"
	"github.com/netplug/netplug/pkg/podwriter"
)

// run is what the execute phase did, for the commit phase to write and report.
type run struct {
	outcomes []executor.Outcome
	changes  []podwriter.Change
	// done are the Normal events of the steps that succeeded.
	done []doneEvent
	// failed lists the failures a retry may fix.
	failed []string
	// skipped counts steps not started because the reconcile's budget ran out.
	skipped int
}

type doneEvent struct{ reason, message string }

// ensureFinalizer adds netplug's finalizer before the first ADD when the pod is to hold a
// hot-plugged interface and lacks it: Multus's DEL needs the pod object, so the pod must not go
// before netplug has released what it plugs. (Patched beside the ADDs instead, a patch refused
// while the API server restarted left interfaces without it; the soak found one that outlived
// its pod.) false: nothing may be plugged until it is written.
func (c *Controller) ensureFinalizer(ctx context.Context, obs *observation, plan attachment.Plan, r *run) bool {
	if podwriter.HasFinalizer(obs.pod) || (len(plan.Adds)+len(plan.Replugs) == 0 && !holdsHotplug(obs.current)) {
		return true
	}
	pod, err := c.writer.AddFinalizer(ctx, obs.pod)
	if err != nil {
		c.warn(obs.pod, ReasonStatusWriteFailed, "adding netplug's finalizer: %v; nothing is plugged until it can be written", err)
		r.failed = append(r.failed, err.Error())
		return false
	}
	obs.pod = pod
	return true
}

// execute carries out the plan through the executor: old sandboxes' records first, then
// removals, replugs and adds (so a name freed by a removal is free before an ADD needs it).
func (c *Controller) execute(ctx context.Context, obs *observation, plan attachment.Plan) *run {
	r := &run{}
	blocked := c.releaseStale(ctx, obs, r)
	for _, ref := range plan.Refused {
		c.warn(obs.pod, ref.Reason, "%s as %s: %s; nothing was called", ref.Attachment.NetworkName(), ref.Attachment.Interface, ref.Message)
	}
	if !c.ensureFinalizer(ctx, obs, plan, r) {
		plan.Adds, plan.Replugs = nil, nil
	}
	deadline := c.opts.Now().Add(c.opts.ReconcileBudget)
	inBudget := func() bool {
		if c.opts.Now().After(deadline) {
			r.skipped++
			return false
		}
		return true
	}
	for _, a := range plan.Adopts {
		c.adopt(obs, r, a)
	}
	// The steps of one pod touch distinct interface names, so they run side by side; removals
	// go first so that what they free (a MAC, an address) is free before an ADD asks for it.
	var removes, plugs []func(*run)
	for _, a := range plan.Removes {
		removes = append(removes, func(sub *run) { c.unplug(ctx, obs, sub, a) })
	}
	for _, rp := range plan.Replugs {
		if !blocked[rp.New.Interface] {
			plugs = append(plugs, func(sub *run) { c.replug(ctx, obs, sub, rp) })
		}
	}
	for _, a := range plan.Adds {
		if !blocked[a.Interface] {
			plugs = append(plugs, func(sub *run) { c.plug(ctx, obs, sub, a, nil) })
		}
	}
	c.runSteps(r, removes, inBudget)
	c.runSteps(r, plugs, inBudget)
	return r
}

// runSteps runs steps, at most StepsInParallel at a time, each recording into a run of its own;
// the runs are merged in the steps' order, so events and status changes keep the plan's order.
// A step not started within the budget is counted as skipped.
func (c *Controller) runSteps(r *run, steps []func(*run), inBudget func() bool) {
	subs := make([]*run, len(steps))
	slots := make(chan struct{}, c.opts.StepsInParallel)
	var wg sync.WaitGroup
	for i, step := range steps {
		slots <- struct{}{}
		if !inBudget() {
			<-slots
			continue
		}
		subs[i] = &run{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			step(subs[i])
		}()
	}
	wg.Wait()
	for _, sub := range subs {
		if sub != nil {
			r.outcomes = append(r.outcomes, sub.outcomes...)
			r.changes = append(r.changes, sub.changes...)
			r.done = append(r.done, sub.done...)
			r.failed = append(r.failed, sub.failed...)
		}
	}
}

// releaseStale DELs the records of sandboxes the pod no longer runs in, so their addresses are
// released; they are not attached to the current one. It returns the interface names whose
// release failed: their records still hold the name, so nothing may be plugged under it yet.
func (c *Controller) releaseStale(ctx context.Context, obs *observation, r *run) map[string]bool {
	blocked := map[string]bool{}
	for _, e := range obs.stale {
		o := c.exec.Release(ctx, e)
		r.outcomes = append(r.outcomes, o)
		if !o.OK() {
			blocked[e.Interface] = true
			c.warn(obs.pod, ReasonOrphanUnplugFailed, "releasing %s/%s (%s) of an old sandbox: %v", e.Namespace, e.Network, e.Interface, o.Failure.Err)
			r.failed = append(r.failed, o.Failure.Error())
			continue
		}
		if e.Device != nil {
			c.returnDevice(obs.pod, e.Device)
		}
		klog.FromContext(ctx).Info("Released an interface of an old sandbox", "network", e.Namespace+"/"+e.Network, "interface", e.Interface, "sandbox", e.SandboxID)
	}
	return blocked
}

func (c *Controller) adopt(obs *observation, r *run, a attachment.Attachment) {
	config, _, err := c.resolve(obs.pod, a)
	if err != nil {
		return // without the NAD there is no config to DEL it with later; Multus keeps owning it
	}
	o := c.exec.Adopt(obs.sandbox, a, config)
	r.outcomes = append(r.outcomes, o)
	if !o.OK() {
		c.failStep(obs.pod, r, a, o.Failure)
	}
}

// plug ADDs a; an element whose NAD names a pool takes a device (keep: the one its old
// record held, in a replug).
func (c *Controller) plug(ctx context.Context, obs *observation, r *run, a attachment.Attachment, keep *checkpoint.Device) bool {
	config, reason, err := c.configOf(obs, a)
	if err != nil {
		c.failResolve(obs.pod, r, a, reason, err)
		return false
	}
	dev, config, ok := c.deviceFor(ctx, obs, r, a, config, keep)
	if !ok {
		return false
	}
	o := c.exec.AddDevice(ctx, obs.sandbox, a, config, dev)
	if dev != nil && (o.Record.Interface == "" || (o.Failure != nil && o.Failure.Kind == executor.KindCheckpoint)) {
		c.opts.Devices.Unreserve(dev.Pool, dev.ID) // no record holds it
		o.Record.Device = nil
	}
	r.outcomes = append(r.outcomes, o)
	if !o.OK() {
		c.failStep(obs.pod, r, a, o.Failure)
		return false
	}
	switch {
	case dev != nil:
		o.Status.DeviceInfo = deviceInfo(dev.PCI)
		r.done = append(r.done, doneEvent{ReasonPlugged, fmt.Sprintf("plugged %s as %s with device %s of pool %s", a.NetworkName(), a.Interface, dev.ID, dev.Pool)})
	case a.Source == attachment.SourceDevice:
		c.movedIn(obs, a, o.Status)
		r.done = append(r.done, doneEvent{ReasonDeviceMovedIn, fmt.Sprintf("moved NIC %s of %s into the pod", a.Interface, a.NetworkName())})
	default:
		r.done = append(r.done, doneEvent{ReasonPlugged, fmt.Sprintf("plugged %s as %s", a.NetworkName(), a.Interface)})
	}
	r.changes = append(r.changes, podwriter.Change{Interface: a.Interface, Entry: o.Status})
	klog.FromContext(ctx).Info("Plugged", "network", a.NetworkName(), "interface", a.Interface, "ips", o.Status.IPs, "mac", o.Status.Mac)
	return true
}

// unplug DELs a with the config, sandbox and interface of its record. The removal is written
// to network-status even when the cached status does not list the interface: the cache may lag
// a write that landed although its answer was lost. The write is guarded by resourceVersion, so
// against a newer pod it conflicts, is recomputed, and drops the entry; only then does the
// record go.
func (c *Controller) unplug(ctx context.Context, obs *observation, r *run, a attachment.Attachment) bool {
	rec, err := c.recordOf(obs, a)
	if err != nil {
		c.warn(obs.pod, ReasonUnplugFailed, "%s from %s: %v; the interface is left in place", a.NetworkName(), a.Interface, err)
		r.failed = append(r.failed, fmt.Sprintf("unplug %s: %v", a, err))
		return false
	}
	o := c.exec.Del(ctx, rec)
	r.outcomes = append(r.outcomes, o)
	if !o.OK() {
		c.failStep(obs.pod, r, a, o.Failure)
		return false
	}
	r.changes = append(r.changes, podwriter.Change{Interface: a.Interface})
	r.done = append(r.done, doneEvent{ReasonUnplugged, fmt.Sprintf("unplugged %s from %s", a.NetworkName(), a.Interface)})
	klog.FromContext(ctx).Info("Unplugged", "network", a.NetworkName(), "interface", a.Interface)
	return true
}

func (c *Controller) replug(ctx context.Context, obs *observation, r *run, rp attachment.Replug) {
	if _, reason, err := c.configOf(obs, rp.New); err != nil {
		c.failResolve(obs.pod, r, rp.New, reason, err)
		return // keep the old interface rather than leave none
	}
	before := len(r.done)
	var keep *checkpoint.Device
	if rec, err := c.recordOf(obs, rp.Old); err == nil {
		keep = rec.Device // the device stays with the interface
	}
	if c.unplug(ctx, obs, r, rp.Old) && c.plug(ctx, obs, r, rp.New, keep) {
		r.done = append(r.done[:before], doneEvent{ReasonReplugged, fmt.Sprintf("replugged %s as %s", rp.New.NetworkName(), rp.New.Interface)})
	}
}

// recordOf is the record a DEL of a uses: netplug's own, or, for an interface Multus attached,
// one made from the NAD as it is now.
func (c *Controller) recordOf(obs *observation, a attachment.Attachment) (checkpoint.Entry, error) {
	for _, e := range obs.current {
		if e.Interface == a.Interface && e.Namespace == a.Namespace && e.Network == a.Network {
			return e, nil
		}
	}
	config, reason, err := c.resolve(obs.pod, a)
	if err != nil {
		return checkpoint.Entry{}, fmt.Errorf("%w (%s)", err, reason)
	}
	return executor.RecordFor(obs.sandbox, a, config), nil
}

// configOf is the CNI config an ADD of a sends: the NAD's, or the generated host-device config
// of a device-pool NIC.
func (c *Controller) configOf(obs *observation, a attachment.Attachment) ([]byte, string, error) {
	if a.Source == attachment.SourceDevice {
		return c.deviceConfig(obs, a)
	}
	return c.resolve(obs.pod, a)
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

// failResolve reports an element whose network cannot be used. Isolation and a bad config are
// not retried: only an edit of the annotation, the config or the NAD fixes them, and each
// enqueues the pod.
func (c *Controller) failResolve(pod *corev1.Pod, r *run, a attachment.Attachment, reason string, err error) {
	c.warn(pod, reason, "%s as %s: %v", a.NetworkName(), a.Interface, err)
	if reason != ReasonIsolation && reason != ReasonInvalidNetwork {
		r.failed = append(r.failed, fmt.Sprintf("%s: %v", a, err))
	}
}

// failStep reports a failed step; a name Multus refused is not retried until an edit.
func (c *Controller) failStep(pod *corev1.Pod, r *run, a attachment.Attachment, f *executor.Failure) {
	verb := "as"
	if f.Op == executor.OpDel {
		verb = "from"
	}
	c.warn(pod, reasonFor(f), "%s %s %s: %s: %v", a.NetworkName(), verb, a.Interface, f.Kind, f.Err)
	if f.Retriable() {
		r.failed = append(r.failed, fmt.Sprintf("%s: %v", a, f))
	}
}
