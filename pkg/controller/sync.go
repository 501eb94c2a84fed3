package controller

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/cri"
	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/executor"
	"github.com/netplug/netplug/pkg/metrics"
	"github.com/netplug/netplug/pkg/podwriter"
)

// requeueError asks for a retry without logging a failure: the pod is not ready for us yet.
type requeueError struct {
	reason string
	after  time.Duration // 0: the rate limiter's backoff
}

func (e requeueError) Error() string { return e.reason }

func isRequeue(err error) bool {
	var r requeueError
	return errors.As(err, &r)
}

func requeueAfter(err error) time.Duration {
	var r requeueError
	if errors.As(err, &r) {
		return r.after
	}
	return 0
}

// sync reconciles one key; it is what the workers call, and what the unit tests drive.
func (c *Controller) sync(ctx context.Context, k key) error {
	if k.Name == "" {
		defer c.locks.Lock(uidLock(k.UID))()
		return c.releaseOrphan(ctx, k.UID)
	}
	defer c.locks.Lock(k.String())()
	pod, err := c.pods.Pods(k.Namespace).Get(k.Name)
	if apierrors.IsNotFound(err) {
		return nil // the delete handler queues the release by UID
	}
	if err != nil {
		return err
	}
	// Also by UID: the release of a deleted pod must not list its records while a reconcile
	// of it is still writing one (an adoption holds no finalizer to keep the pod meanwhile).
	defer c.locks.Lock(uidLock(pod.UID))()
	switch {
	case pod.Spec.NodeName != c.opts.NodeName:
		return nil // never act on another node's pod
	case pod.DeletionTimestamp != nil:
		return c.releaseTerminating(ctx, pod)
	case podCompleted(pod):
		return c.releaseCompleted(ctx, pod)
	}
	obs, err := c.observe(ctx, pod)
	if obs == nil {
		return err
	}
	plan := attachment.PlanWith(obs.selection, obs.devices, obs.status, append(records(obs.current), records(obs.claims)...))
	run := c.execute(ctx, obs, plan)
	return c.commit(ctx, obs, run)
}

func uidLock(uid types.UID) string { return "uid/" + string(uid) }

// observation is what one reconcile knows of one pod.
type observation struct {
	pod       *corev1.Pod
	selection attachment.Selection
	status    []nadv1.NetworkStatus
	sandbox   executor.Sandbox
	// current are the pod's records for its current sandbox; stale those of older sandboxes.
	current, stale []checkpoint.Entry
	// devices are the pod's device-backed attachments, nics their NICs by interface (devices.go).
	devices []attachment.Attachment
	nics    map[string]devices.NIC
	// claims are the records of interfaces DRA ResourceClaims hold (Origin "claim"): the NRI
	// hook plugs and unplugs them; the planner sees them only as names in use.
	claims []checkpoint.Entry
}

// observe reads the pod, its selection, network-status, records and READY sandbox. A nil
// observation means there is nothing to do now (the error says whether to retry).
func (c *Controller) observe(ctx context.Context, pod *corev1.Pod) (*observation, error) {
	logger := klog.FromContext(ctx)
	annotation := pod.Annotations[nadv1.NetworkAttachmentAnnot]
	if pod.Spec.HostNetwork {
		if strings.TrimSpace(annotation) != "" {
			c.warn(pod, ReasonHostNetwork, "pod uses the host network: secondary networks cannot be plugged into it")
		}
		return nil, nil
	}
	if c.staleCache(pod) {
		return nil, requeueError{reason: "informer cache older than netplug's last write"}
	}
	sel, status, ok := c.parseAnnotations(pod)
	if !ok {
		return nil, nil // only a new edit can fix it, and that edit enqueues the pod
	}
	entries, err := c.listRecords(pod)
	if err != nil {
		return nil, err
	}
	for _, p := range sel.Problems {
		c.warn(pod, p.Reason, "%s; nothing attached is removed until it is fixed", p.Error())
	}
	if len(entries) == 0 && len(sel.Attachments) == 0 && len(sel.AtCreation) == 0 && !listsSecondary(status) &&
		!podwriter.HasFinalizer(pod) && !c.wantsDevices(pod) {
		c.setAttached(pod.UID, 0)
		return nil, nil // the common case costs no I/O beyond one directory read
	}
	// Multus writes network-status while it sets the sandbox up; the pod reports Running only
	// after that, so acting before would mistake Multus's own interfaces for missing ones.
	if pod.Status.Phase != corev1.PodRunning {
		logger.V(2).Info("Waiting for the pod to run", "phase", pod.Status.Phase)
		return nil, nil // the pod's transition to Running enqueues it again
	}
	sb, createdWith, err := c.sandbox(ctx, pod)
	if err != nil || sb == nil {
		return nil, err
	}
	sel.AtCreation = askedAtCreation(sel.AtCreation, createdWith, pod.Namespace, c.opts.MaxNetworksPerPod)
	obs := &observation{pod: pod, selection: sel, status: status, sandbox: *sb}
	for _, e := range entries {
		if e.Origin == checkpoint.OriginClaim {
			obs.claims = append(obs.claims, e)
			continue
		}
		if e.SandboxID == sb.ID {
			obs.current = append(obs.current, e)
		} else {
			obs.stale = append(obs.stale, e)
		}
	}
	if err := c.observeDevices(ctx, obs); err != nil {
		return nil, err
	}
	return obs, nil
}

// parseAnnotations reads the pod's selection (with what it asked Multus for at creation) and
// network-status; a problem is a Warning and ok is false: nothing may change until an edit.
func (c *Controller) parseAnnotations(pod *corev1.Pod) (sel attachment.Selection, status []nadv1.NetworkStatus, ok bool) {
	sel, err := c.selections.get(pod, c.opts.MaxNetworksPerPod)
	c.atCreation.saw(pod, sel)
	sel.AtCreation = c.atCreation.of(pod.UID) // a copy of the cached value: the cache stays as parsed
	if errors.Is(err, attachment.ErrTooManyElements) {
		c.warn(pod, ReasonTooManyNetworks, "%v; no interface was changed", err)
		return sel, nil, false
	}
	if err != nil {
		c.warn(pod, ReasonInvalidSelection, "%v; no interface was changed", err)
		return sel, nil, false
	}
	if status, err = attachment.ParseNetworkStatus(pod.Annotations[nadv1.NetworkStatusAnnot]); err != nil {
		c.warn(pod, ReasonInvalidStatus, "%v; no interface was changed", err)
		return sel, nil, false
	}
	return sel, status, true
}

// listRecords lists the pod's records; the ones that cannot be read are set aside with a
// Warning, and the pod carries on with the rest.
func (c *Controller) listRecords(pod *corev1.Pod) ([]checkpoint.Entry, error) {
	listing, err := c.checkpoints.List(string(pod.UID))
	if err != nil {
		c.warn(pod, ReasonCheckpointFailed, "%v", err)
		return nil, err
	}
	for _, q := range listing.Quarantined {
		c.warn(pod, ReasonCheckpointQuarantined, "checkpoint %s could not be read and was set aside (%v); an interface it described may need a manual release", q.File, q.Err)
	}
	return listing.Entries, nil
}

// listsSecondary says whether network-status lists an interface besides the default network's:
// one Multus attached at creation may be the pod's to remove (see askedAtCreation).
func listsSecondary(status []nadv1.NetworkStatus) bool {
	return slices.ContainsFunc(status, func(st nadv1.NetworkStatus) bool { return !st.Default })
}

// askedAtCreation adds to known the networks the pod's selection listed when kubelet created its
// sandbox (the runtime keeps the pod's annotations of that moment): Multus attached those because
// the pod asked for them, so they are the pod's to remove. The informer's view alone misses them
// when the pod was created and edited while netplug was down (the soak found such an interface
// kept). known is never modified: it is the creation cache's own map.
func askedAtCreation(known map[string]bool, sandboxAnnotations map[string]string, namespace string, maxElements int) map[string]bool {
	sel, err := attachment.ParseSelectionWithin(sandboxAnnotations[nadv1.NetworkAttachmentAnnot], namespace, maxElements)
	if err != nil || len(sel.Attachments) == 0 {
		return known
	}
	merged := make(map[string]bool, len(known)+len(sel.Attachments))
	maps.Copy(merged, known)
	for _, a := range sel.Attachments {
		merged[a.NetworkName()] = true
	}
	return merged
}

// sandbox finds the pod's READY sandbox and the annotations kubelet created it with; nil with a
// nil error means nothing is to be done.
func (c *Controller) sandbox(ctx context.Context, pod *corev1.Pod) (*executor.Sandbox, map[string]string, error) {
	sandboxCtx, cancel := context.WithTimeout(ctx, time.Minute)
	sb, err := c.runtime.PodSandbox(sandboxCtx, string(pod.UID))
	cancel()
	switch {
	case errors.Is(err, cri.ErrNoReadySandbox):
		return nil, nil, requeueError{reason: "pod has no ready sandbox yet"}
	case errors.Is(err, cri.ErrHostNetwork):
		c.warn(pod, ReasonHostNetwork, "pod sandbox uses the host network: secondary networks cannot be plugged into it")
		return nil, nil, nil
	case err != nil:
		c.warn(pod, ReasonSandboxLookup, "finding the pod's network namespace: %v", err)
		return nil, nil, err
	}
	return &executor.Sandbox{PodNamespace: pod.Namespace, PodName: pod.Name, PodUID: string(pod.UID),
		ID: sb.ID, NetNS: sb.NetNS}, sb.Annotations, nil
}

func records(entries []checkpoint.Entry) []attachment.Record {
	out := make([]attachment.Record, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Record())
	}
	return out
}

func (c *Controller) event(pod *corev1.Pod, eventType, reason, format string, args ...interface{}) {
	c.recorder.Eventf(pod, eventType, reason, format, args...)
}

// warn records a Warning event and counts the failure by reason.
func (c *Controller) warn(pod *corev1.Pod, reason, format string, args ...interface{}) {
	metrics.Failures.WithLabelValues(reason).Inc()
	c.recorder.Eventf(pod, corev1.EventTypeWarning, reason, format, args...)
}
