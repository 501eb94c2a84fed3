package attachment

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
)

// Replug replaces an attached interface: DEL Old, then ADD New on the same interface name.
type Replug struct {
	Old, New Attachment
}

// Plan is the set of steps that turns current into desired. Callers run Removes, then
// Replugs, then Adds, so that names freed by a removal are free before an ADD needs them.
type Plan struct {
	Adds    []Attachment
	Removes []Attachment
	Replugs []Replug
	// Adopts are interfaces Multus attached at pod creation that a selection element asks for
	// as they are: netplug records them (no CNI call), so it may remove them once the
	// selection drops them.
	Adopts []Attachment
	// Refused are desired elements that must not be acted on (see Diff).
	Refused []Refusal
}

// Refusal is a desired element the plan will not act on, with the reason for its event.
type Refusal struct {
	Attachment Attachment
	Reason     string
	Message    string
}

// Empty reports whether the plan calls nothing and records nothing.
func (p Plan) Empty() bool {
	return len(p.Adds) == 0 && len(p.Removes) == 0 && len(p.Replugs) == 0 && len(p.Adopts) == 0
}

// Steps counts the CNI calls the plan makes (a replug is two).
func (p Plan) Steps() int { return len(p.Adds) + len(p.Removes) + 2*len(p.Replugs) }

// AssignInterfaces names the desired attachments that have no interface, stably, so that the
// same element maps to the same interface on every reconcile:
//  1. an unnamed element takes the netN interface of a current attachment of the same network
//     with the same attributes, then of the same network with any attributes (a replug), never
//     one that a named element claims. An interface the user named (not netN) is never adopted:
//     an unnamed element gets a netN, as Multus names them at pod creation;
//  2. the rest take the lowest netN (N >= 1) that no element and no current attachment uses.
func AssignInterfaces(desired, current []Attachment) []Attachment {
	out := slices.Clone(desired)
	used := map[string]bool{}
	for _, d := range out {
		if d.Interface != "" {
			used[d.Interface] = true
		}
	}
	taken := map[string]bool{} // current interfaces already matched to an unnamed element
	match := func(same func(d, c Attachment) bool) {
		for i := range out {
			if out[i].Interface != "" {
				continue
			}
			for _, c := range current {
				if taken[c.Interface] || used[c.Interface] || c.ClaimBacked || !isGeneratedName(c.Interface) ||
					c.NetworkName() != out[i].NetworkName() || !same(out[i], c) {
					continue
				}
				out[i].Interface = c.Interface
				taken[c.Interface] = true
				break
			}
		}
	}
	match(func(d, c Attachment) bool { return !attributesChanged(d, c) })
	match(func(Attachment, Attachment) bool { return true })

	for _, c := range current {
		used[c.Interface] = true
	}
	for _, d := range out {
		used[d.Interface] = true
	}
	next := 1
	for i := range out {
		if out[i].Interface != "" {
			continue
		}
		for used["net"+strconv.Itoa(next)] {
			next++
		}
		out[i].Interface = "net" + strconv.Itoa(next)
		used[out[i].Interface] = true
	}
	return out
}

// isGeneratedName reports whether iface has the form of a generated name: "net" and a number
// without leading zeros, N >= 1.
func isGeneratedName(iface string) bool {
	n, ok := strings.CutPrefix(iface, "net")
	if !ok || n == "" || n[0] == '0' {
		return false
	}
	for _, r := range n {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Diff computes the plan from named desired attachments to current ones. With holdRemovals
// (the selection had problems) nothing attached is removed. defaults are the interfaces of the
// pod's default network (see DefaultInterfaces).
//
// Ownership: only Managed attachments are removed. An unmanaged one (Multus attached it, or
// another writer did) that a desired element of the same network asks for is adopted, or
// replugged if its attributes differ; one of another network makes that element Refused,
// like a default-network interface: Multus would refuse the ADD, and a DEL of the name would
// destroy an interface netplug does not own. A ClaimBacked attachment (a DRA ResourceClaim's)
// is never removed, adopted or replugged: an element naming its interface is Refused.
func Diff(desired, current []Attachment, defaults map[string]bool, holdRemovals bool) Plan {
	var p Plan
	currentByInterface := make(map[string]Attachment, len(current))
	for _, c := range current {
		currentByInterface[c.Interface] = c
	}
	wanted := make(map[string]bool, len(desired))
	deviceNames := map[string]bool{}
	for _, d := range desired {
		if d.Source == SourceDevice {
			deviceNames[d.Interface] = true
		}
	}
	for _, d := range desired {
		c, attached := currentByInterface[d.Interface]
		switch {
		case d.Source != SourceDevice && (deviceNames[d.Interface] || attached && c.Source == SourceDevice):
			// A device-backed interface is never replugged or replaced by the annotation path.
			p.Refused = append(p.Refused, Refusal{Attachment: d, Reason: ReasonInterfaceInUse,
				Message: fmt.Sprintf("interface %s is a NIC of a device pool allocated to the pod", d.Interface)})
			continue
		case defaults[d.Interface]:
			p.Refused = append(p.Refused, Refusal{Attachment: d, Reason: ReasonInterfaceInUse,
				Message: fmt.Sprintf("interface %s is the pod's default network interface", d.Interface)})
			continue
		case attached && c.ClaimBacked:
			p.Refused = append(p.Refused, Refusal{Attachment: d, Reason: ReasonInterfaceInUse,
				Message: fmt.Sprintf("interface %s is held by a ResourceClaim (network %s); the annotation cannot change it", d.Interface, c.NetworkName())})
			continue
		case attached && !c.Managed && !c.FromCreation && c.NetworkName() != d.NetworkName():
			p.Refused = append(p.Refused, Refusal{Attachment: d, Reason: ReasonInterfaceInUse,
				Message: fmt.Sprintf("interface %s is in use by network %s, which netplug did not attach", d.Interface, c.NetworkName())})
			continue
		}
		wanted[d.Interface] = true
		switch {
		case !attached:
			p.Adds = append(p.Adds, d)
		case c.NetworkName() != d.NetworkName(), !c.Confirmed, c.Uncertain, attributesChanged(d, c):
			p.Replugs = append(p.Replugs, Replug{Old: c, New: d})
		case !c.Managed:
			p.Adopts = append(p.Adopts, d)
		}
	}
	if !holdRemovals {
		for _, c := range current {
			// Device-backed interfaces go with the pod, never with a change of the selection.
			if !wanted[c.Interface] && (c.Managed || c.FromCreation) && c.Source != SourceDevice {
				p.Removes = append(p.Removes, c)
			}
		}
	}
	return p
}

// PlanFor is the whole decision for one pod: it names the selection's interfaces against what
// the pod has (network-status and netplug's records) and diffs the two.
func PlanFor(sel Selection, status []nadv1.NetworkStatus, records []Record) Plan {
	return PlanWith(sel, nil, status, records)
}

// PlanWith is PlanFor with the device-backed attachments of the pod (Source SourceDevice, named
// after their host link) as a second source of desired state. They are never removed, and no
// annotation element may take their names.
func PlanWith(sel Selection, devices []Attachment, status []nadv1.NetworkStatus, records []Record) Plan {
	current := Current(status, records)
	for i, c := range current { // see Selection.AtCreation
		current[i].FromCreation = !c.Managed && !c.ClaimBacked && sel.AtCreation[c.NetworkName()]
	}
	desired := AssignInterfaces(append(slices.Clone(sel.Attachments), devices...), current)
	return Diff(desired, current, DefaultInterfaces(status), len(sel.Problems) > 0)
}

// attributesChanged compares what d requests with what c has. When c's requested attributes
// are unknown (Multus attached it at pod creation) only what network-status shows can be
// compared: requested IPs must be among its IPs, a requested MAC must be its MAC.
func attributesChanged(d, c Attachment) bool {
	if c.AttributesKnown {
		return !d.Attributes.Equal(c.Attributes)
	}
	if d.Attributes.MAC != "" && !SameMAC(d.Attributes.MAC, c.ObservedMAC) {
		return true
	}
	for _, want := range d.Attributes.IPs {
		if !slices.ContainsFunc(c.ObservedIPs, func(have string) bool { return sameAddress(want, have) }) {
			return true
		}
	}
	return false
}

// sameAddress compares the address part of two IPs that may be in CIDR form.
func sameAddress(a, b string) bool {
	pa, pb := parseAddress(a), parseAddress(b)
	return pa != nil && pb != nil && pa.Equal(pb)
}

func parseAddress(s string) net.IP {
	if ip, _, err := net.ParseCIDR(s); err == nil {
		return ip
	}
	return net.ParseIP(s)
}
