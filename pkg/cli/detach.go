package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/netplug/netplug/pkg/attachment"
)

type detachOptions struct {
	*common
	wait   time.Duration
	dryRun bool
}

func newDetachCommand(c *common) *cobra.Command {
	o := &detachOptions{common: c}
	cmd := &cobra.Command{
		Use:   "detach POD IFACE|[NAMESPACE/]NETWORK",
		Short: "Unplug a secondary network from a running pod",
		Long: `Unplug a secondary network from a running pod: remove its element from the
k8s.v1.cni.cncf.io/networks annotation, which netplug acts on.

The element is found by interface name (one the user named, or the netN netplug gave it), else by
network, which must then be unique in the annotation. Every other element is kept byte for byte.`,
		Example: `  kubectl netplug detach mypod net1 --wait
  kubectl netplug detach mypod other-ns/br1`,
		Args:              args(2, 2),
		ValidArgsFunction: c.completePodThenElement,
		RunE: func(cmd *cobra.Command, a []string) error {
			return o.run(cmd.Context(), a[0], a[1])
		},
	}
	addWaitFlag(cmd.Flags(), &o.wait, "wait until netplug has unplugged the interface, at most this long (--wait alone: 2m)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print the annotation that would be written, and write nothing")
	return cmd
}

// detachPlan is what a detach writes and expects.
type detachPlan struct {
	after   string
	write   bool // false: the annotation no longer asks for it, netplug is (or was) removing it
	network string
	iface   string
}

// candidate is one element of the annotation, with the interface netplug gives it.
type candidate struct {
	index          int
	network, iface string
	named, invalid bool
}

// candidates lists the annotation's elements, valid or not, with their interfaces.
func candidates(sel attachment.Selection, current []attachment.Attachment) []candidate {
	var out []candidate
	desired := attachment.AssignInterfaces(sel.Attachments, current)
	for i, a := range sel.Attachments {
		out = append(out, candidate{index: a.Index, network: a.NetworkName(), iface: desired[i].Interface, named: a.Interface != ""})
	}
	for _, p := range sel.Problems {
		network, iface := p.Element, ""
		if i := strings.LastIndex(p.Element, "@"); i >= 0 {
			network, iface = p.Element[:i], p.Element[i+1:]
		}
		out = append(out, candidate{index: p.Index, network: network, iface: iface, named: iface != "", invalid: true})
	}
	return out
}

// planDetach removes the element target names from the pod's annotation.
func planDetach(pod *corev1.Pod, target string) (detachPlan, error) {
	before := pod.Annotations[networksAnnotation]
	sel, err := attachment.ParseSelection(before, pod.Namespace)
	if err != nil {
		return detachPlan{}, refused("the pod's network-selection annotation is unusable (%v): fix or remove it (kubectl annotate pod %s %s-)", err, pod.Name, networksAnnotation)
	}
	entries, _ := attachment.ParseNetworkStatus(pod.Annotations[statusAnnotation])
	current := attachment.Current(entries, nil)
	all := candidates(sel, current)
	network := target
	if !strings.Contains(network, "/") {
		network = pod.Namespace + "/" + network
	}
	var matches []candidate
	for _, c := range all {
		if c.iface == target {
			matches = append(matches, c)
		}
	}
	if len(matches) == 0 {
		for _, c := range all {
			if c.network == network {
				matches = append(matches, c)
			}
		}
	}
	switch {
	case len(matches) > 1:
		var ifaces []string
		for _, m := range matches {
			ifaces = append(ifaces, m.iface)
		}
		return detachPlan{}, refused("pod %s/%s has %d elements of network %s (interfaces %s): name the interface to detach",
			pod.Namespace, pod.Name, len(matches), network, strings.Join(ifaces, ", "))
	case len(matches) == 0:
		for _, s := range secondaryEntries(pod) {
			if s.Interface == target || s.Network == network {
				return detachPlan{after: before, network: s.Network, iface: s.Interface}, nil
			}
		}
		var have []string
		for _, c := range all {
			have = append(have, c.network+"@"+c.iface)
		}
		if len(have) == 0 {
			have = []string{"none"}
		}
		return detachPlan{}, exitErr(ExitNotFound, "pod %s/%s has no interface or network %q (its elements: %s)",
			pod.Namespace, pod.Name, target, strings.Join(have, ", "))
	}
	m := matches[0]
	after, err := RemoveElement(before, m.index)
	if err != nil {
		return detachPlan{}, err
	}
	newSel, _, err := CheckEdit(before, after, pod.Namespace)
	if err != nil {
		return detachPlan{}, err
	}
	if len(newSel.Problems) > 0 {
		p := newSel.Problems[0]
		return detachPlan{}, refused("netplug removes no interface while the annotation has an invalid element: %s (%s); detach or fix that element first", p.Error(), p.Reason)
	}
	if !m.named {
		for _, d := range attachment.AssignInterfaces(newSel.Attachments, current) {
			if d.Interface == m.iface {
				return detachPlan{}, refused("netplug would keep %s and unplug another interface of %s instead, because these elements name no interface; "+
					"detach that other interface, or name the interfaces in the annotation (NETWORK@IFACE) first", m.iface, m.network)
			}
		}
	}
	return detachPlan{after: after, write: true, network: m.network, iface: m.iface}, nil
}

func (o *detachOptions) run(ctx context.Context, podName, target string) error {
	if strings.TrimSpace(target) == "" {
		return usageErr("the interface or network is empty")
	}
	if err := o.setup(); err != nil {
		return err
	}
	pod, err := o.getPod(ctx, o.namespace, podName)
	if err != nil {
		return err
	}
	plan, err := planDetach(pod, target)
	if err != nil {
		return err
	}
	if o.dryRun {
		o.printf("%s\n", plan.after)
		return nil
	}
	if plan.write {
		if err := o.checkNetplugOnNode(ctx, pod); err != nil {
			return err
		}
	}
	written, baseline, err := o.edit(ctx, pod, o.wait > 0, func(p *corev1.Pod) (string, bool, error) {
		var err error
		plan, err = planDetach(p, target)
		return plan.after, plan.write, err
	})
	if err != nil {
		return err
	}
	if plan.write {
		o.printf("pod/%s: detaching %s from %s\n", pod.Name, plan.network, plan.iface)
	} else {
		o.printf("pod/%s: the annotation no longer requests %s on %s; netplug unplugs it\n", pod.Name, plan.network, plan.iface)
	}
	if o.wait <= 0 {
		return nil
	}
	return o.waitFor(ctx, o.wait, written, baseline, waitSpec{
		what: fmt.Sprintf("detach %s from %s", plan.network, plan.iface),
		done: func(p *corev1.Pod) (bool, string) {
			for _, s := range secondaryEntries(p) {
				if s.Interface == plan.iface && s.Network == plan.network {
					return false, ""
				}
			}
			return true, plan.network + " detached from " + plan.iface
		},
		failure: func(e *corev1.Event) bool {
			return podLevelReasons[e.Reason] || concerns(e, plan.network, plan.iface)
		},
	})
}
