//go:build e2e

package framework

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
)

// Link is a network interface as the kernel inside a pod's network namespace shows it.
type Link struct {
	Name  string
	Index int
	Type  string // netlink's type: veth, macvlan, device (lo), ...
	MAC   string
	Up    bool
	// Addrs are the global-scope addresses in CIDR form, sorted (link-local IPv6 is left out).
	Addrs []string
}

// Same reports whether l and o are the same kernel link with the same configuration: a link
// deleted and re-created gets a new index (and, for veth and macvlan, a new MAC).
func (l Link) Same(o Link) bool {
	return l.Name == o.Name && l.Index == o.Index && l.Type == o.Type && l.MAC == o.MAC && slices.Equal(l.Addrs, o.Addrs)
}

// DisagreesWith says how the link differs from its network-status entry, or "" if it agrees:
// it is up, has the entry's MAC and exactly the entry's addresses.
func (l Link) DisagreesWith(st nadv1.NetworkStatus) string {
	if !l.Up {
		return fmt.Sprintf("link %s is down", l.Name)
	}
	if !strings.EqualFold(l.MAC, st.Mac) {
		return fmt.Sprintf("link %s has MAC %s, network-status says %q", l.Name, l.MAC, st.Mac)
	}
	var have, want []string
	for _, a := range l.Addrs {
		have = append(have, IpOf(a))
	}
	for _, a := range st.IPs {
		want = append(want, IpOf(a))
	}
	sort.Strings(have)
	sort.Strings(want)
	if !slices.Equal(have, want) {
		return fmt.Sprintf("link %s has addresses %v, network-status says %v", l.Name, l.Addrs, st.IPs)
	}
	return ""
}

// PodLinks lists the links of the pod's network namespace, found through CRI like netplug does.
func (f *Framework) PodLinks(ctx context.Context, pod *corev1.Pod) (map[string]Link, error) {
	sandbox, err := f.Cri.PodSandbox(ctx, string(pod.UID))
	if err != nil {
		return nil, fmt.Errorf("finding the sandbox of pod %s: %w", pod.Name, err)
	}
	links, err := NetnsLinks(sandbox.NetNS)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	return links, nil
}

// NetnsLinks lists the links of the network namespace at path, through a netlink socket
// opened in it (no goroutine switches namespace).
func NetnsLinks(path string) (map[string]Link, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("opening netns %s: %w", path, err)
	}
	defer func() { _ = ns.Close() }()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	defer h.Close()
	if err := h.SetSocketTimeout(5 * time.Second); err != nil {
		return nil, fmt.Errorf("netlink socket timeout: %w", err)
	}
	list, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links in %s: %w", path, err)
	}
	out := make(map[string]Link, len(list))
	for _, l := range list {
		attrs := l.Attrs()
		link := Link{
			Name:  attrs.Name,
			Index: attrs.Index,
			Type:  l.Type(),
			MAC:   attrs.HardwareAddr.String(),
			Up:    attrs.Flags&net.FlagUp != 0,
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("listing addresses of %s in %s: %w", attrs.Name, path, err)
		}
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() {
				continue
			}
			link.Addrs = append(link.Addrs, a.IPNet.String())
		}
		sort.Strings(link.Addrs)
		out[link.Name] = link
	}
	return out, nil
}

// LinkNames is the sorted names of links.
func LinkNames(links map[string]Link) []string {
	names := make([]string, 0, len(links))
	for n := range links {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// IpOf returns the address of an IP or CIDR string in canonical form, or "" if it is neither.
func IpOf(s string) string {
	if ip, _, err := net.ParseCIDR(s); err == nil {
		return ip.String()
	}
	if ip := net.ParseIP(s); ip != nil {
		return ip.String()
	}
	return ""
}

// InSubnet reports whether the IP or CIDR s lies in subnet.
func InSubnet(s, subnet string) bool {
	_, n, err := net.ParseCIDR(subnet)
	ip := net.ParseIP(IpOf(s))
	return err == nil && ip != nil && n.Contains(ip)
}
