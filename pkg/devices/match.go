package devices

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Device is one device of a pool.
type Device struct {
	// ID is the kubelet's device ID: the PCI address of a NIC that has one (what Multus hands
	// to host-device in flow a), else the link's name; for a device node, its path as a name
	// (dev-net-tun), with the share number when it is shared.
	ID string
	// Interface is the host link of a NIC.
	Interface string
	// PCI is the NIC's PCI address, if any.
	PCI string
	// Path is the device node of a character-device pool.
	Path string
	// Healthy: the link is there with carrier, or the device node is there.
	Healthy bool
	// NUMA is the NIC's NUMA node, -1 when unknown (a virtual link, a device node).
	NUMA int
}

// Excluded is a link a pool's matcher selects that is never put in a pool, and why.
type Excluded struct {
	Link, Reason string
}

// neverMatched are kinds of links that are never handed out: they carry other links.
var neverMatched = []string{"bridge", "bond", "team", "openvswitch", "vrf"}

// Match puts the discovered links and device nodes into the pools. A link is never matched if
// it is the loopback, carries a default route (the uplink), is in use (enslaved to a bridge,
// bond, team or OVS: it has a master; or carries other links: it has upper devices), or is
// itself a bridge, bond, team, OVS or VRF device. A link two pools match (a prefix pool and a
// driver pool) is in neither: a device is never given twice.
func Match(pools []Pool, links []Link, defaultRoute map[string]bool, present func(path string) bool) (map[string][]Device, []Excluded) {
	out := make(map[string][]Device, len(pools))
	var excluded []Excluded
	for _, l := range links {
		var owners []Pool
		for _, p := range pools {
			if p.Kind() == KindNIC && p.matches(l) {
				owners = append(owners, p)
			}
		}
		if len(owners) == 0 {
			continue
		}
		if reason := unusable(l, defaultRoute); reason != "" {
			excluded = append(excluded, Excluded{Link: l.Name, Reason: reason})
			continue
		}
		if len(owners) > 1 {
			names := make([]string, len(owners))
			for i, p := range owners {
				names[i] = p.ResourceName
			}
			excluded = append(excluded, Excluded{Link: l.Name, Reason: "matched by several pools: " + strings.Join(names, ", ")})
			continue
		}
		id := l.Name
		if l.PCI != "" {
			id = l.PCI
		}
		p := owners[0]
		out[p.ResourceName] = append(out[p.ResourceName], Device{ID: id, Interface: l.Name, PCI: l.PCI, Healthy: l.Carrier, NUMA: l.NUMA})
	}
	for _, p := range pools {
		if p.Kind() != KindChar {
			continue
		}
		for _, path := range p.CharDevices {
			ok := present(path)
			for i := 0; i < p.Shares; i++ {
				out[p.ResourceName] = append(out[p.ResourceName], Device{ID: charID(path, i, p.Shares), Path: path, Healthy: ok, NUMA: -1})
			}
		}
	}
	for _, devs := range out {
		slices.SortFunc(devs, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	}
	return out, excluded
}

func (p Pool) matches(l Link) bool {
	switch {
	case p.InterfacePrefix != "":
		return strings.HasPrefix(l.Name, p.InterfacePrefix)
	case p.Driver != "":
		return l.Driver == p.Driver
	case len(p.PCIAddresses) > 0:
		return l.PCI != "" && slices.Contains(p.PCIAddresses, l.PCI)
	}
	return false
}

func unusable(l Link, defaultRoute map[string]bool) string {
	switch {
	case l.Loop:
		return "loopback"
	case defaultRoute[l.Name]:
		return "carries the node's default route"
	case l.Master:
		return "in use: enslaved to a bridge, bond, team or OVS (it has a master)"
	case l.Upper:
		return "in use: other links sit on top of it (it has upper devices)"
	case slices.Contains(neverMatched, l.Driver):
		return fmt.Sprintf("a %s device", l.Driver)
	}
	return ""
}

// charID names share i of a device node: /dev/net/tun is dev-net-tun, or dev-net-tun-3.
func charID(path string, i, shares int) string {
	id := strings.ReplaceAll(strings.Trim(path, "/"), "/", "-")
	if shares > 1 {
		id += "-" + strconv.Itoa(i)
	}
	return id
}
