package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"

	"github.com/netplug/netplug/pkg/attachment"
)

// The schema of `status -o json|yaml`. Fields are only ever added.
const (
	StatusAPIVersion = "netplug.io/v1alpha1"
	StatusKind       = "InterfaceStatusList"
)

// States of an interface.
const (
	StateAttached  = "attached"  // network-status lists it as requested
	StatePending   = "pending"   // requested, netplug has not plugged it yet
	StateFailed    = "failed"    // requested, and netplug's last word on it is a Warning (or netplug refuses it)
	StateDetaching = "detaching" // network-status lists it, the annotation no longer requests it
)

// StatusList is the output of `status -o json|yaml`.
type StatusList struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []InterfaceStatus `json:"items"`
}

// InterfaceStatus is one requested or attached secondary interface of a pod.
type InterfaceStatus struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Node      string `json:"node,omitempty"`
	// Interface is the name in the pod: the requested one, or the netN netplug gives it; ""
	// for an annotation netplug cannot parse at all.
	Interface string `json:"interface"`
	// Network is the NetworkAttachmentDefinition as namespace/name.
	Network string   `json:"network"`
	IPs     []string `json:"ips"`
	MAC     string   `json:"mac"`
	State   string   `json:"state"`
	// Reason and Message are netplug's last Warning about a failed interface.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Device is the device behind a device-backed interface, as network-status reports it.
	Device *nadv1.DeviceInfo `json:"device,omitempty"`
}

type statusOptions struct {
	*common
	selector      string
	allNamespaces bool
	output        string
}

func newStatusCommand(c *common) *cobra.Command {
	o := &statusOptions{common: c}
	cmd := &cobra.Command{
		Use:   "status [POD | -l SELECTOR | -A]",
		Short: "Show the secondary networks of pods, and why any failed",
		Long: `Show, per interface, what pods request and what they have: the interface, network, IPs, MAC
and state (attached, pending, failed, detaching), and for a failed one the reason and message
of netplug's last Warning event about it. Without POD it shows every pod of the namespace that
has secondary networks (or of every namespace, with -A).`,
		Example: `  kubectl netplug status mypod
  kubectl netplug status -l app=web -o json
  kubectl netplug status -A`,
		Args:              args(0, 1),
		ValidArgsFunction: c.completePods,
		RunE: func(cmd *cobra.Command, a []string) error {
			return o.run(cmd.Context(), a)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.selector, "selector", "l", "", "label selector of the pods")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "pods of every namespace")
	f.StringVarP(&o.output, "output", "o", "", "output format: json or yaml (default: a table)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (o *statusOptions) run(ctx context.Context, a []string) error {
	switch o.output {
	case "", "json", "yaml":
	default:
		return usageErr("--output %q: use json or yaml", o.output)
	}
	if len(a) == 1 && (o.selector != "" || o.allNamespaces) {
		return usageErr("give either POD or -l/-A, not both")
	}
	if err := o.setup(); err != nil {
		return err
	}
	var pods []corev1.Pod
	if len(a) == 1 {
		pod, err := o.getPod(ctx, o.namespace, a[0])
		if err != nil {
			return err
		}
		pods = []corev1.Pod{*pod}
	} else {
		ns := o.namespace
		if o.allNamespaces {
			ns = metav1.NamespaceAll
		}
		list, err := o.clients.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: o.selector})
		if err != nil {
			return apiErr(err, "listing pods")
		}
		for _, p := range list.Items {
			if p.Annotations[networksAnnotation] != "" || len(secondaryEntries(&p)) > 0 {
				pods = append(pods, p)
			}
		}
	}
	events, err := o.podEvents(ctx, pods, len(a) == 1)
	if err != nil {
		return err
	}
	out := StatusList{APIVersion: StatusAPIVersion, Kind: StatusKind, Items: []InterfaceStatus{}}
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		return pods[i].Name < pods[j].Name
	})
	for i := range pods {
		out.Items = append(out.Items, PodStatus(&pods[i], events[string(pods[i].UID)])...)
	}
	switch o.output {
	case "json":
		raw, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		o.printf("%s\n", raw)
	case "yaml":
		raw, err := yaml.Marshal(out)
		if err != nil {
			return err
		}
		o.printf("%s", raw)
	default:
		if len(out.Items) == 0 {
			where := "namespace " + o.namespace
			switch {
			case len(a) == 1:
				where = "pod " + o.namespace + "/" + a[0]
			case o.allNamespaces:
				where = "any namespace"
			}
			_, _ = fmt.Fprintf(o.streams.ErrOut, "No secondary networks found in %s.\n", where)
			return nil
		}
		return printTable(o.streams.Out, out.Items, o.allNamespaces)
	}
	return nil
}

// podEvents lists netplug's events on the pods, by pod UID. Without the right to read events
// it warns and goes on: failed interfaces then show less.
func (o *statusOptions) podEvents(ctx context.Context, pods []corev1.Pod, single bool) (map[string][]corev1.Event, error) {
	byUID := map[string][]corev1.Event{}
	if len(pods) == 0 {
		return byUID, nil
	}
	want := map[string]bool{}
	namespaces := map[string]bool{}
	for _, p := range pods {
		want[string(p.UID)] = true
		namespaces[p.Namespace] = true
	}
	sel := fields.Set{"involvedObject.kind": "Pod", "source": netplugComponent}
	if single {
		sel["involvedObject.uid"] = string(pods[0].UID)
	}
	var lists []string
	if o.allNamespaces {
		lists = []string{metav1.NamespaceAll}
	} else {
		for ns := range namespaces {
			lists = append(lists, ns)
		}
	}
	for _, ns := range lists {
		list, err := o.clients.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel.String()})
		if apierrors.IsForbidden(err) {
			o.warnf("cannot read events (permission denied): the reasons of failures are not shown")
			return byUID, nil
		}
		if err != nil {
			return nil, apiErr(err, "listing events")
		}
		for _, e := range list.Items {
			if uid := string(e.InvolvedObject.UID); want[uid] && fromNetplug(&e) {
				byUID[uid] = append(byUID[uid], e)
			}
		}
	}
	return byUID, nil
}

// eventTime is when an event last happened.
func eventTime(e *corev1.Event) time.Time {
	t := e.LastTimestamp.Time
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime.Time
	}
	if e.EventTime.After(t) {
		t = e.EventTime.Time
	}
	return t
}

// sortEvents orders events oldest first; events of the same second by resourceVersion, which
// the API server hands out in increasing order.
func sortEvents(events []corev1.Event) {
	sort.SliceStable(events, func(i, j int) bool {
		ti, tj := eventTime(&events[i]), eventTime(&events[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		ri, erri := strconv.ParseUint(events[i].ResourceVersion, 10, 64)
		rj, errj := strconv.ParseUint(events[j].ResourceVersion, 10, 64)
		return erri == nil && errj == nil && ri < rj
	})
}

// lastEvent is the newest event that match accepts, or nil.
func lastEvent(events []corev1.Event, match func(*corev1.Event) bool) *corev1.Event {
	for i := len(events) - 1; i >= 0; i-- {
		if match(&events[i]) {
			return &events[i]
		}
	}
	return nil
}

// PodStatus computes the interfaces of one pod from its annotations and netplug's events on
// it: the requested ones in annotation order, then those network-status lists that are no
// longer requested.
func PodStatus(pod *corev1.Pod, events []corev1.Event) []InterfaceStatus {
	events = append([]corev1.Event(nil), events...)
	sortEvents(events)
	row := func(iface, network, state string) InterfaceStatus {
		return InterfaceStatus{Namespace: pod.Namespace, Pod: pod.Name, Node: pod.Spec.NodeName,
			Interface: iface, Network: network, IPs: []string{}, State: state}
	}
	failWith := func(r *InterfaceStatus, reason, message string, match func(*corev1.Event) bool) {
		r.State, r.Reason, r.Message = StateFailed, reason, message
		if e := lastEvent(events, func(e *corev1.Event) bool { return e.Type == corev1.EventTypeWarning && match(e) }); e != nil {
			r.Reason, r.Message = e.Reason, e.Message
		}
	}
	annotation := pod.Annotations[networksAnnotation]
	entries, statusErr := attachment.ParseNetworkStatus(pod.Annotations[statusAnnotation])
	var out []InterfaceStatus
	if statusErr != nil {
		r := row("", "", StateFailed)
		failWith(&r, reasonInvalidStatus, statusErr.Error(), func(e *corev1.Event) bool { return e.Reason == reasonInvalidStatus })
		out = append(out, r)
	}
	byIface := map[string]nadv1.NetworkStatus{}
	for _, e := range entries {
		if !e.Default && e.Interface != "" {
			if _, dup := byIface[e.Interface]; !dup {
				byIface[e.Interface] = e
			}
		}
	}
	attached := func(r *InterfaceStatus, e nadv1.NetworkStatus) {
		r.State, r.MAC, r.Device = StateAttached, e.Mac, e.DeviceInfo
		if len(e.IPs) > 0 {
			r.IPs = e.IPs
		}
	}
	requested := map[string]bool{}
	sel, selErr := attachment.ParseSelection(annotation, pod.Namespace)
	switch {
	case pod.Spec.HostNetwork && strings.TrimSpace(annotation) != "":
		r := row("", "", StateFailed)
		failWith(&r, reasonHostNetwork, "pod uses the host network: secondary networks cannot be plugged into it",
			func(e *corev1.Event) bool { return e.Reason == reasonHostNetwork })
		out = append(out, r)
	case selErr != nil:
		// netplug changes nothing until the annotation is fixed: what is attached stays.
		r := row("", "", StateFailed)
		failWith(&r, reasonInvalidSelection, selErr.Error()+"; no interface was changed",
			func(e *corev1.Event) bool { return e.Reason == reasonInvalidSelection })
		out = append(out, r)
		for _, e := range entries {
			if !e.Default && e.Interface != "" {
				requested[e.Interface] = true
				r := row(e.Interface, e.Name, StateAttached)
				attached(&r, e)
				out = append(out, r)
			}
		}
	default:
		type indexed struct {
			index int
			row   InterfaceStatus
		}
		var rows []indexed
		desired := attachment.AssignInterfaces(sel.Attachments, attachment.Current(entries, nil))
		for _, d := range desired {
			requested[d.Interface] = true
			r := row(d.Interface, d.NetworkName(), StatePending)
			network, iface := d.NetworkName(), d.Interface
			last := lastEvent(events, func(e *corev1.Event) bool { return concerns(e, network, iface) })
			switch e, ok := byIface[d.Interface]; {
			case ok && e.Name == network:
				attached(&r, e)
			case last != nil && last.Type == corev1.EventTypeWarning:
				r.State, r.Reason, r.Message = StateFailed, last.Reason, last.Message
			case pod.Status.Phase != corev1.PodRunning:
				r.Message = fmt.Sprintf("the pod is %s: netplug plugs it once the pod runs", pod.Status.Phase)
			}
			rows = append(rows, indexed{d.Index, r})
		}
		for _, p := range sel.Problems {
			network, iface := p.Element, ""
			if i := strings.LastIndex(p.Element, "@"); i >= 0 {
				network, iface = p.Element[:i], p.Element[i+1:]
			}
			r := row(iface, network, StateFailed)
			element := p.Element
			failWith(&r, p.Reason, p.Error(), func(e *corev1.Event) bool {
				return e.Reason == p.Reason && strings.Contains(e.Message, element)
			})
			rows = append(rows, indexed{p.Index, r})
		}
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].index < rows[j].index })
		for _, r := range rows {
			out = append(out, r.row)
		}
	}
	for _, e := range entries {
		if e.Default || e.Interface == "" || requested[e.Interface] {
			continue
		}
		requested[e.Interface] = true
		r := row(e.Interface, e.Name, StateDetaching)
		attached(&r, e)
		r.State = StateDetaching
		network, iface := e.Name, e.Interface
		if last := lastEvent(events, func(ev *corev1.Event) bool { return concerns(ev, network, iface) }); last != nil && last.Type == corev1.EventTypeWarning {
			r.State, r.Reason, r.Message = StateFailed, last.Reason, last.Message
		}
		out = append(out, r)
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func printTable(w io.Writer, items []InterfaceStatus, withNamespace bool) error {
	tw := printers.GetNewTabWriter(w)
	header := []string{"POD", "INTERFACE", "NETWORK", "IPS", "MAC", "STATE", "REASON", "MESSAGE"}
	if withNamespace {
		header = append([]string{"NAMESPACE"}, header...)
	}
	_, _ = fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, it := range items {
		cols := []string{it.Pod, orNone(it.Interface), orNone(it.Network), orNone(strings.Join(it.IPs, ",")), orNone(it.MAC), it.State, it.Reason, it.Message}
		if withNamespace {
			cols = append([]string{it.Namespace}, cols...)
		}
		_, _ = fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	return tw.Flush()
}
