package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/netplug/netplug/pkg/attachment"
)

type attachOptions struct {
	*common
	ips     []string
	mac     string
	cniArgs []string
	wait    time.Duration
	dryRun  bool
}

func newAttachCommand(c *common) *cobra.Command {
	o := &attachOptions{common: c}
	cmd := &cobra.Command{
		Use:   "attach POD [NAMESPACE/]NETWORK[@IFACE]",
		Short: "Plug a secondary network into a running pod",
		Long: `Plug a secondary network into a running pod: add an element to its
k8s.v1.cni.cncf.io/networks annotation, which netplug acts on.

NETWORK is a NetworkAttachmentDefinition of the pod's namespace, or NAMESPACE/NETWORK. Without
@IFACE netplug names the interface (the lowest free netN) and keeps that name. The edit is checked
with netplug's own parser first and refused if netplug would refuse it; the annotation keeps its
form (comma or JSON list) unless --ip, --mac or --cni-arg need the JSON form.`,
		Example: `  kubectl netplug attach mypod macvlan-conf --wait
  kubectl netplug attach mypod other-ns/br1@data0 --ip 10.10.0.5/24 --mac 02:00:00:00:00:05
  kubectl netplug attach mypod br1 --cni-arg foo=bar --cni-arg vlan:=100 --wait=30s`,
		Args:              args(2, 2),
		ValidArgsFunction: c.completePodThenNetwork,
		RunE: func(cmd *cobra.Command, a []string) error {
			return o.run(cmd.Context(), a[0], a[1])
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.ips, "ip", nil, "static IP address or CIDR for the interface (repeatable; the NAD's plugins must support the ips capability)")
	f.StringVar(&o.mac, "mac", "", "MAC address for the interface (the NAD's plugins must support the mac capability)")
	f.StringArrayVar(&o.cniArgs, "cni-arg", nil, "extra CNI arg KEY=VALUE (a string) or KEY:=JSON (any JSON value); repeatable")
	addWaitFlag(f, &o.wait, "wait until netplug has plugged the interface, at most this long (--wait alone: 2m)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the annotation that would be written, and write nothing")
	return cmd
}

// parseCNIArgs turns KEY=VALUE and KEY:=JSON into the element's cni-args.
func parseCNIArgs(pairs []string) (map[string]any, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	out := map[string]any{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, usageErr("--cni-arg %q is not KEY=VALUE or KEY:=JSON", p)
		}
		var value any = v
		if raw, isJSON := strings.CutSuffix(k, ":"); isJSON {
			k = raw
			if err := json.Unmarshal([]byte(v), &value); err != nil {
				return nil, usageErr("--cni-arg %q: the value is not JSON: %v", p, err)
			}
		}
		if k == "" {
			return nil, usageErr("--cni-arg %q has no key", p)
		}
		if _, dup := out[k]; dup {
			return nil, usageErr("--cni-arg %q: key %q given twice", p, k)
		}
		out[k] = value
	}
	return out, nil
}

// attachPlan is what an attach writes and expects.
type attachPlan struct {
	after     string
	write     bool // false: the element is already there
	converted bool
	warnings  []string
	network   string // namespace/name
	iface     string // the interface the element gets
	predicted bool   // iface is the name netplug will choose, not one the user asked for
}

// planAttach adds el to the pod's annotation and checks the result as netplug would.
func planAttach(pod *corev1.Pod, el Element) (attachPlan, error) {
	before := pod.Annotations[networksAnnotation]
	mine, err := parseOne(el, pod.Namespace)
	if err != nil {
		return attachPlan{}, err
	}
	p := attachPlan{network: mine.NetworkName(), iface: mine.Interface}
	old, err := attachment.ParseSelection(before, pod.Namespace)
	if err != nil {
		return attachPlan{}, refused("the pod's network-selection annotation is already unusable (%v): fix or remove it first", err)
	}
	if mine.Interface != "" {
		for _, a := range old.Attachments {
			if a.Interface == mine.Interface && a.NetworkName() == mine.NetworkName() && a.Attributes.Equal(mine.Attributes) {
				p.after = before
				return p, nil // already there: nothing to write
			}
		}
	}
	after, converted, err := AppendElement(before, el)
	if err != nil {
		return attachPlan{}, err
	}
	sel, warnings, err := CheckEdit(before, after, pod.Namespace)
	if err != nil {
		return attachPlan{}, err
	}
	p.after, p.write, p.converted, p.warnings = after, true, converted, warnings
	index := len(sel.Attachments) + len(sel.Problems) - 1
	entries, err := attachment.ParseNetworkStatus(pod.Annotations[statusAnnotation])
	if err != nil {
		p.warnings = append(p.warnings, err.Error())
	}
	desired := attachment.AssignInterfaces(sel.Attachments, attachment.Current(entries, nil))
	for i, a := range sel.Attachments {
		if a.Index == index {
			if p.iface == "" {
				p.iface, p.predicted = desired[i].Interface, true
			}
			continue
		}
		if mine.Interface == "" && a.Interface == "" && a.NetworkName() == mine.NetworkName() {
			p.warnings = append(p.warnings, fmt.Sprintf("the pod already has an element of %s (%s); this adds another interface on it", a.NetworkName(), desired[i].Interface))
		}
	}
	return p, nil
}

// parseOne parses el alone with netplug's parser: the attachment netplug would make of it.
func parseOne(el Element, podNamespace string) (attachment.Attachment, error) {
	alone, _, err := AppendElement("", el)
	if err != nil {
		return attachment.Attachment{}, err
	}
	sel, _, err := CheckEdit("", alone, podNamespace)
	if err != nil {
		return attachment.Attachment{}, err
	}
	if len(sel.Attachments) != 1 {
		return attachment.Attachment{}, refused("%q is not one network selection element", alone)
	}
	return sel.Attachments[0], nil
}

func (o *attachOptions) run(ctx context.Context, podName, netArg string) error {
	el, err := ParseElementArg(netArg)
	if err != nil {
		return err
	}
	el.IPs, el.MAC = o.ips, o.mac
	if el.CNIArgs, err = parseCNIArgs(o.cniArgs); err != nil {
		return err
	}
	if err := o.setup(); err != nil {
		return err
	}
	pod, err := o.getPod(ctx, o.namespace, podName)
	if err != nil {
		return err
	}
	if err := checkPluggable(pod); err != nil {
		return err
	}
	plan, err := planAttach(pod, el) // refuse bad input before any other call
	if err != nil {
		return err
	}
	nadNS := el.Namespace
	if nadNS == "" {
		nadNS = pod.Namespace
	}
	if err := o.checkNAD(ctx, nadNS, el.Name); err != nil {
		return err
	}
	if err := o.checkNetplugOnNode(ctx, pod); err != nil {
		return err
	}
	if o.dryRun {
		o.printf("%s\n", plan.after)
		return nil
	}
	written, baseline, err := o.edit(ctx, pod, o.wait > 0, func(p *corev1.Pod) (string, bool, error) {
		var err error
		plan, err = planAttach(p, el)
		return plan.after, plan.write, err
	})
	if err != nil {
		return err
	}
	for _, w := range plan.warnings {
		o.warnf("%s", w)
	}
	if plan.converted {
		o.warnf("the annotation of pod %s/%s was converted from the comma form to the JSON list form: the comma form cannot express the new element (--ip, --mac, --cni-arg, or its names)", pod.Namespace, pod.Name)
	}
	as := plan.iface
	if plan.predicted {
		as += " (the name netplug gives it)"
	}
	if plan.write {
		o.printf("pod/%s: attaching %s as %s\n", pod.Name, plan.network, as)
	} else {
		o.printf("pod/%s: %s as %s is already requested\n", pod.Name, plan.network, plan.iface)
	}
	if o.wait <= 0 {
		return nil
	}
	return o.waitAttached(ctx, o.wait, written, baseline, plan)
}
