package devices

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Link is one host network link as sysfs shows it.
type Link struct {
	Name    string
	Driver  string // kernel driver or link kind: virtio_net, veth, bridge, ...
	PCI     string // PCI address of the function behind the link, "" for a virtual link
	Master  bool   // enslaved to a bridge, bond, team or OVS (has a master)
	Upper   bool   // other links sit on top of it (VLANs, macvlans, a bond of it)
	Loop    bool   // loopback
	Carrier bool   // carrier is 1 (or operstate is up)
	NUMA    int    // NUMA node of the PCI function (device/numa_node); -1 when unknown or virtual
}

// KindResolver names the kind of a virtual link that sysfs does not (a veth has no device
// directory and no DEVTYPE). The real one asks netlink in the host's network namespace.
type KindResolver interface {
	LinkKind(name string) (string, error)
}

// Sysfs reads the node's devices below Root ("/" on a node; a temporary tree in tests), in the
// layout of /sys/class/net/<if>/{device,device/driver,master,upper_*,uevent,carrier,operstate,flags},
// /sys/bus/pci/devices and /proc/net/route.
type Sysfs struct {
	Root string
	// Kinds names the kind of a virtual link without a driver in sysfs; nil leaves it "".
	Kinds KindResolver
	// IsDevice reports whether a device node is usable (default: it is a character device).
	IsDevice func(fs.FileInfo) bool
	// HostDev is where the node's /dev is seen ("/host/dev" in the DaemonSet, a read-only mount:
	// a container's own /dev lacks the nodes it was not given); "" reads <Root>/dev.
	HostDev string
}

func (s Sysfs) path(p ...string) string { return filepath.Join(append([]string{s.Root}, p...)...) }

const classNet = "sys/class/net"

// Links lists the host's links whose name want accepts (nil: all of them). A node's links are
// mostly its pods' veths: a filter by name spares reading each of them on every scan.
func (s Sysfs) Links(want func(name string) bool) ([]Link, error) {
	entries, err := os.ReadDir(s.path(classNet))
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	links := make([]Link, 0, len(entries))
	for _, e := range entries {
		if want != nil && !want(e.Name()) {
			continue
		}
		if l, ok := s.link(e.Name()); ok {
			links = append(links, l)
		}
	}
	return links, nil
}

// link reads one link; false if it went away meanwhile.
func (s Sysfs) link(name string) (Link, bool) {
	dir := s.path(classNet, name)
	if _, err := os.Stat(dir); err != nil {
		return Link{}, false
	}
	l := Link{Name: name, NUMA: -1}
	if target, err := filepath.EvalSymlinks(filepath.Join(dir, "device")); err == nil {
		l.PCI = pciOf(target)
		if n, err := strconv.Atoi(readString(filepath.Join(dir, "device", "numa_node"))); err == nil && n >= 0 {
			l.NUMA = n
		}
		if drv, err := os.Readlink(filepath.Join(dir, "device", "driver")); err == nil {
			l.Driver = filepath.Base(drv)
		}
	}
	uevent := readKV(filepath.Join(dir, "uevent"))
	if l.Driver == "" {
		l.Driver = uevent["DEVTYPE"]
	}
	if l.Driver == "" && s.Kinds != nil {
		if kind, err := s.Kinds.LinkKind(name); err == nil {
			l.Driver = kind
		}
	}
	_, err := os.Lstat(filepath.Join(dir, "master"))
	l.Master = err == nil
	uppers, _ := filepath.Glob(filepath.Join(dir, "upper_*"))
	l.Upper = len(uppers) > 0
	if flags, err := strconv.ParseUint(readString(filepath.Join(dir, "flags")), 0, 32); err == nil {
		l.Loop = flags&0x8 != 0 // IFF_LOOPBACK
	}
	l.Loop = l.Loop || readString(filepath.Join(dir, "type")) == "772" // ARPHRD_LOOPBACK
	// carrier cannot be read on a link that is administratively down (EINVAL): no carrier.
	l.Carrier = readString(filepath.Join(dir, "carrier")) == "1" || readString(filepath.Join(dir, "operstate")) == "up"
	return l, true
}

// pciOf is the last PCI address in a resolved device path: a virtio NIC's device is virtioN,
// whose parent is the PCI function.
func pciOf(devicePath string) string {
	parts := strings.Split(filepath.ToSlash(devicePath), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if validPCI(parts[i]) {
			return parts[i]
		}
	}
	return ""
}

// PCINetdevs lists the links of a PCI function (/sys/bus/pci/devices/<addr>/net, also through a
// virtio child); none if it is bound to a driver without a netdev (vfio-pci).
func (s Sysfs) PCINetdevs(addr string) []string {
	dir := s.path("sys/bus/pci/devices", addr)
	var names []string
	for _, pattern := range []string{"net/*", "virtio*/net/*"} {
		matches, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, m := range matches {
			names = append(names, filepath.Base(m))
		}
	}
	return names
}

// DefaultRouteLinks names the links that carry a default route (/proc/net/route, IPv4, and
// /proc/net/ipv6_route): the node's uplink is never matched.
func (s Sysfs) DefaultRouteLinks() (map[string]bool, error) {
	out := map[string]bool{}
	f, err := os.Open(s.path("proc/net/route"))
	if err != nil {
		return nil, fmt.Errorf("reading the default route: %w", err)
	}
	defer f.Close() //nolint:errcheck // read-only
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		if len(fields) >= 8 && fields[1] == "00000000" && fields[7] == "00000000" {
			out[fields[0]] = true
		}
	}
	if data, err := os.ReadFile(s.path("proc/net/ipv6_route")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			fields := strings.Fields(line)
			// dest destlen src srclen nexthop metric refcnt use flags iface
			if len(fields) == 10 && fields[0] == strings.Repeat("0", 32) && fields[1] == "00" && fields[9] != "lo" {
				out[fields[9]] = true
			}
		}
	}
	return out, sc.Err()
}

// DevicePresent reports whether the device node at path (absolute on the node) is there and
// usable.
func (s Sysfs) DevicePresent(path string) bool {
	node := s.path(path)
	if rest, ok := strings.CutPrefix(path, "/dev/"); ok && s.HostDev != "" {
		node = filepath.Join(s.HostDev, rest)
	}
	fi, err := os.Stat(node)
	if err != nil {
		return false
	}
	if s.IsDevice != nil {
		return s.IsDevice(fi)
	}
	return fi.Mode()&fs.ModeCharDevice != 0
}

func readString(p string) string {
	data, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

func readKV(p string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(readString(p), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
		}
	}
	return out
}

// errNotFound is a link or device that is not on the host.
var errNotFound = errors.New("not found on the host")
