package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/netplug/netplug/pkg/attachment"
)

// Reasons of netplug's Warning events (pkg/controller/events.go; a test keeps them in step)
// that concern a pod as a whole rather than one element: any of them after an edit means the
// edit failed. Element-level warnings name the element's network in their message.
const (
	reasonInvalidSelection  = "InvalidNetworkSelection"
	reasonInvalidStatus     = "InvalidNetworkStatus"
	reasonHostNetwork       = "HostNetworkPod"
	reasonSandboxLookup     = "SandboxLookupFailed"
	reasonCheckpointFailed  = "CheckpointFailed"
	reasonStatusWriteFailed = "StatusWriteFailed"
)

var podLevelReasons = map[string]bool{
	reasonInvalidSelection: true, reasonInvalidStatus: true, reasonHostNetwork: true,
	reasonSandboxLookup: true, reasonCheckpointFailed: true, reasonStatusWriteFailed: true,
}

// addWaitFlag adds --wait[=DURATION]: --wait alone waits defaultWait.
func addWaitFlag(f *pflag.FlagSet, p *time.Duration, usage string) {
	f.DurationVar(p, "wait", 0, usage)
	f.Lookup("wait").NoOptDefVal = defaultWait.String()
}

// eventBaseline is the pod's events before an edit: a Warning is the edit's outcome only if
// it is new or repeated since.
type eventBaseline struct {
	disabled        bool // the events cannot be read: only network-status is watched
	resourceVersion string
	seen            map[string]string // event name -> fingerprint
}

func fingerprint(e *corev1.Event) string {
	return fmt.Sprintf("%s/%d/%s/%s", e.ResourceVersion, e.Count, e.LastTimestamp.UTC(), e.EventTime.UTC())
}

func (b eventBaseline) isNew(e *corev1.Event) bool {
	fp, ok := b.seen[e.Name]
	return !ok || fp != fingerprint(e)
}

func eventSelector(pod *corev1.Pod) string {
	return fields.OneTermEqualSelector("involvedObject.uid", string(pod.UID)).String()
}

// snapshotEvents records the pod's events before an edit.
func (c *common) snapshotEvents(ctx context.Context, pod *corev1.Pod) (eventBaseline, error) {
	list, err := c.clients.Kube.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{FieldSelector: eventSelector(pod)})
	if apierrors.IsForbidden(err) {
		c.warnf("cannot read the events of pod %s/%s (permission denied): --wait only sees success", pod.Namespace, pod.Name)
		return eventBaseline{disabled: true}, nil
	}
	if err != nil {
		return eventBaseline{}, apiErr(err, "listing events of pod "+pod.Namespace+"/"+pod.Name)
	}
	b := eventBaseline{resourceVersion: list.ResourceVersion, seen: map[string]string{}}
	for i := range list.Items {
		if list.Items[i].InvolvedObject.UID == pod.UID {
			b.seen[list.Items[i].Name] = fingerprint(&list.Items[i])
		}
	}
	return b, nil
}

// fromNetplug reports whether netplug recorded the event.
func fromNetplug(e *corev1.Event) bool {
	return e.Source.Component == netplugComponent || e.ReportingController == netplugComponent
}

// concerns reports whether a netplug event is about network (namespace/name) on iface (any
// interface when ""). netplug's messages name an element as "NETWORK as IFACE" (plugging),
// "NETWORK from IFACE" (unplugging) or "(NETWORK@IFACE)" (a refused element).
func concerns(e *corev1.Event, network, iface string) bool {
	for _, form := range []string{network + " as " + iface, network + " from " + iface, "(" + network + "@" + iface} {
		i := strings.Index(e.Message, form)
		if i < 0 {
			continue
		}
		if iface == "" {
			return true
		}
		// The interface name must end there: "net1" is not "net10".
		rest := e.Message[i+len(form):]
		if rest == "" || strings.ContainsAny(rest[:1], ":;,) ") {
			return true
		}
	}
	return iface == "" && strings.Contains(e.Message, "("+network+")")
}

// waitSpec says when a wait is over.
type waitSpec struct {
	what string
	// done reports whether the pod shows the change made, and a line saying how.
	done func(pod *corev1.Pod) (bool, string)
	// failure reports whether a new Warning event of netplug's means the change failed.
	failure func(e *corev1.Event) bool
}

// waitFor watches the pod and its events until spec is done (nil), a Warning says it failed
// (ExitFailed), the pod goes away (ExitFailed) or the wait times out (ExitTimeout).
func (c *common) waitFor(parent context.Context, timeout time.Duration, pod *corev1.Pod, baseline eventBaseline, spec waitSpec) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	pods := c.clients.Kube.CoreV1().Pods(pod.Namespace)
	events := c.clients.Kube.CoreV1().Events(pod.Namespace)
	current := pod
	check := func(p *corev1.Pod) (bool, error) {
		if p.UID != pod.UID {
			return false, exitErr(ExitFailed, "pod %s/%s was replaced by another pod of the same name", pod.Namespace, pod.Name)
		}
		current = p
		if ok, how := spec.done(p); ok {
			c.printf("pod/%s: %s\n", pod.Name, how)
			return true, nil
		}
		return false, nil
	}
	failed := func(e *corev1.Event) error {
		if e.InvolvedObject.UID != pod.UID || e.Type != corev1.EventTypeWarning || !fromNetplug(e) || !baseline.isNew(e) || !spec.failure(e) {
			return nil
		}
		return exitErr(ExitFailed, "netplug failed to %s: %s: %s (netplug retries with backoff; kubectl netplug status %s -n %s shows where it stands)",
			spec.what, e.Reason, e.Message, pod.Name, pod.Namespace)
	}
	timedOut := func() error {
		state := "netplug has not reported it done"
		if current.Status.Phase != corev1.PodRunning {
			state = fmt.Sprintf("the pod is %s; netplug acts once it runs", current.Status.Phase)
		}
		return exitErr(ExitTimeout, "timed out after %s waiting to %s: %s", timeout, spec.what, state)
	}
	if done, err := check(current); done || err != nil {
		return err
	}

	var podW, eventW watch.Interface
	defer func() {
		for _, w := range []watch.Interface{podW, eventW} {
			if w != nil {
				w.Stop()
			}
		}
	}()
	startPods := func() error {
		if podW != nil {
			podW.Stop()
		}
		var err error
		podW, err = pods.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", pod.Name).String(),
			ResourceVersion: current.ResourceVersion,
		})
		return err
	}
	startEvents := func() error {
		if eventW != nil {
			eventW.Stop()
		}
		var err error
		eventW, err = events.Watch(ctx, metav1.ListOptions{FieldSelector: eventSelector(pod), ResourceVersion: baseline.resourceVersion})
		return err
	}
	watchErr := func(err error, what string) error {
		if ctx.Err() != nil {
			return timedOut()
		}
		return apiErr(err, "watching "+what+" of pod "+pod.Namespace+"/"+pod.Name)
	}
	if err := startPods(); err != nil {
		return watchErr(err, "")
	}
	var eventCh <-chan watch.Event // nil blocks: no events to watch
	if !baseline.disabled {
		if err := startEvents(); err != nil {
			return watchErr(err, "the events")
		}
		eventCh = eventW.ResultChan()
	}
	podCh := podW.ResultChan()
	for {
		select {
		case <-ctx.Done():
			return timedOut()
		case ev, ok := <-podCh:
			if ok && ev.Type == watch.Deleted {
				return exitErr(ExitFailed, "pod %s/%s was deleted while waiting to %s", pod.Namespace, pod.Name, spec.what)
			}
			if p, isPod := ev.Object.(*corev1.Pod); ok && isPod && (ev.Type == watch.Added || ev.Type == watch.Modified) {
				if p.Name != pod.Name {
					continue
				}
				if done, err := check(p); done || err != nil {
					return err
				}
				continue
			}
			if ok && ev.Type != watch.Error {
				continue // a bookmark
			}
			// The watch ended or broke (e.g. its resourceVersion expired): re-read and watch again.
			fresh, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				return exitErr(ExitFailed, "pod %s/%s was deleted while waiting to %s", pod.Namespace, pod.Name, spec.what)
			case err != nil:
				return watchErr(err, "")
			}
			if done, err := check(fresh); done || err != nil {
				return err
			}
			if err := startPods(); err != nil {
				return watchErr(err, "")
			}
			podCh = podW.ResultChan()
		case ev, ok := <-eventCh:
			if e, isEvent := ev.Object.(*corev1.Event); ok && isEvent {
				if err := failed(e); err != nil {
					return err
				}
				continue
			}
			if ok && ev.Type != watch.Error {
				continue
			}
			// Re-list what happened meanwhile, then watch again from there.
			list, err := events.List(ctx, metav1.ListOptions{FieldSelector: eventSelector(pod)})
			if err != nil {
				return watchErr(err, "the events")
			}
			for i := range list.Items {
				if err := failed(&list.Items[i]); err != nil {
					return err
				}
			}
			baseline.resourceVersion = list.ResourceVersion
			if err := startEvents(); err != nil {
				return watchErr(err, "the events")
			}
			eventCh = eventW.ResultChan()
		}
	}
}

// secondaryEntries are the pod's non-default network-status entries.
func secondaryEntries(pod *corev1.Pod) []attachmentStatus {
	entries, err := attachment.ParseNetworkStatus(pod.Annotations[statusAnnotation])
	if err != nil {
		return nil
	}
	var out []attachmentStatus
	for _, e := range entries {
		if !e.Default && e.Interface != "" {
			out = append(out, attachmentStatus{Network: e.Name, Interface: e.Interface, IPs: e.IPs, MAC: e.Mac})
		}
	}
	return out
}

// attachmentStatus is one secondary network-status entry.
type attachmentStatus struct {
	Network, Interface string
	IPs                []string
	MAC                string
}

func describe(s attachmentStatus) string {
	var parts []string
	if len(s.IPs) > 0 {
		parts = append(parts, strings.Join(s.IPs, ","))
	}
	if s.MAC != "" {
		parts = append(parts, "MAC "+s.MAC)
	}
	if len(parts) == 0 {
		return s.Network + " attached as " + s.Interface
	}
	return s.Network + " attached as " + s.Interface + ": " + strings.Join(parts, ", ")
}

// waitAttached waits until network-status lists the planned interface.
func (c *common) waitAttached(ctx context.Context, timeout time.Duration, written *corev1.Pod, baseline eventBaseline, plan attachPlan) error {
	before := map[string]bool{}
	for _, s := range secondaryEntries(written) {
		if s.Network == plan.network && (s.Interface != plan.iface || !plan.write) {
			before[s.Interface] = true
		}
	}
	iface := plan.iface
	if plan.predicted {
		iface = "" // netplug may choose another name than predicted: match any new one
	}
	return c.waitFor(ctx, timeout, written, baseline, waitSpec{
		what: fmt.Sprintf("attach %s as %s", plan.network, plan.iface),
		done: func(p *corev1.Pod) (bool, string) {
			for _, s := range secondaryEntries(p) {
				if s.Network != plan.network {
					continue
				}
				if s.Interface == plan.iface || (plan.predicted && !before[s.Interface]) {
					return true, describe(s)
				}
			}
			return false, ""
		},
		failure: func(e *corev1.Event) bool {
			return podLevelReasons[e.Reason] || concerns(e, plan.network, iface)
		},
	})
}
