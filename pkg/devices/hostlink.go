package devices

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// HostLinks reads a host link's state before netplug moves it into a pod, and puts it back
// after the link came back. Both act in netplug's own network namespace, which must be the
// host's (hostNetwork); Restore needs CAP_NET_ADMIN there.
type HostLinks interface {
	State(name string) (HostState, error)
	Restore(name string, s HostState) error
}

// Netlink is HostLinks over rtnetlink.
type Netlink struct{}

// State returns the link's global addresses (not IPv6 link-local ones, which the kernel makes
// again) and MTU.
func (Netlink) State(name string) (HostState, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return HostState{}, fmt.Errorf("host link %s: %w", name, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return HostState{}, fmt.Errorf("addresses of host link %s: %w", name, err)
	}
	var ips []*net.IPNet
	for _, a := range addrs {
		ips = append(ips, a.IPNet)
	}
	return HostState{Addresses: Prefixes(ips), MTU: link.Attrs().MTU}, nil
}

// Restore sets the MTU and adds the addresses back, and sets the link up.
func (Netlink) Restore(name string, s HostState) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("host link %s: %w", name, err)
	}
	var errs []error
	if s.MTU > 0 && link.Attrs().MTU != s.MTU {
		errs = append(errs, netlink.LinkSetMTU(link, s.MTU))
	}
	for _, p := range s.Addresses {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if err := netlink.AddrReplace(link, addr); err != nil {
			errs = append(errs, fmt.Errorf("address %s: %w", p, err))
		}
	}
	errs = append(errs, netlink.LinkSetUp(link))
	if err := errors.Join(errs...); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("restoring host link %s needs CAP_NET_ADMIN in the host network namespace: %w", name, err)
		}
		return fmt.Errorf("restoring host link %s: %w", name, err)
	}
	return nil
}

// LinkKind is the rtnetlink kind of a link (veth, vlan, ...): the driver of a virtual link,
// which sysfs does not show.
func (Netlink) LinkKind(name string) (string, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return "", err
	}
	return link.Type(), nil
}

// Prefixes keeps the addresses worth restoring: not IPv6 link-local ones.
func Prefixes(ips []*net.IPNet) []netip.Prefix {
	var out []netip.Prefix
	for _, ip := range ips {
		if ip == nil {
			continue
		}
		addr, ok := netip.AddrFromSlice(ip.IP)
		if !ok {
			continue
		}
		addr = addr.Unmap()
		if addr.IsLinkLocalUnicast() && addr.Is6() {
			continue
		}
		ones, _ := ip.Mask.Size()
		out = append(out, netip.PrefixFrom(addr, ones))
	}
	return out
}
