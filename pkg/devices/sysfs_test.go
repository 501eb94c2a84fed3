package devices

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// tree is a fake node: sysfs and procfs below a temporary root.
type tree struct {
	t    *testing.T
	root string
}

func newTree(t *testing.T) *tree {
	t.Helper()
	tr := &tree{t: t, root: t.TempDir()}
	tr.write("proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"+
		"eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"+
		"eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
	tr.write("proc/net/ipv6_route", "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003   eth6\n"+
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n")
	return tr
}

func (tr *tree) write(p, data string) {
	tr.t.Helper()
	full := filepath.Join(tr.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *tree) symlink(target, p string) {
	tr.t.Helper()
	full := filepath.Join(tr.root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		tr.t.Fatal(err)
	}
}

type linkSpec struct {
	devtype, carrier, operstate string
	pci, driver                 string // a PCI function with a driver; virtio puts a virtioN child between
	virtio, master, upper, loop bool
	numa                        string // device/numa_node of a PCI function ("-1" without NUMA)
}

// link adds /sys/class/net/<name> in the kernel's layout.
func (tr *tree) link(name string, s linkSpec) {
	dir := "sys/class/net/" + name
	tr.write(dir+"/uevent", "INTERFACE="+name+"\nIFINDEX=3\n")
	if s.devtype != "" {
		tr.write(dir+"/uevent", "DEVTYPE="+s.devtype+"\nINTERFACE="+name+"\n")
	}
	if s.carrier != "" {
		tr.write(dir+"/carrier", s.carrier+"\n")
	}
	if s.operstate != "" {
		tr.write(dir+"/operstate", s.operstate+"\n")
	}
	flags := "0x1003"
	if s.loop {
		flags = "0x9"
	}
	tr.write(dir+"/flags", flags+"\n")
	if s.pci != "" {
		pciDir := "sys/devices/pci0000:00/" + s.pci
		dev := pciDir
		if s.virtio {
			dev = pciDir + "/virtio3"
			tr.write(dev+"/net/"+name+"/ifindex", "3\n")
		} else {
			tr.write(pciDir+"/net/"+name+"/ifindex", "3\n")
		}
		tr.write("sys/bus/drivers/"+s.driver+"/bind", "")
		if s.virtio {
			tr.symlink("../../../../bus/drivers/"+s.driver, dev+"/driver")
		} else {
			tr.symlink("../../../bus/drivers/"+s.driver, dev+"/driver")
		}
		if s.numa != "" {
			tr.write(dev+"/numa_node", s.numa+"\n")
		}
		tr.symlink("../../../devices/pci0000:00/"+s.pci, "sys/bus/pci/devices/"+s.pci)
		tr.symlink("../../../"+dev[len("sys/"):], dir+"/device")
	}
	if s.master {
		tr.symlink("../br0", dir+"/master")
	}
	if s.upper {
		tr.symlink("../vlan10", dir+"/upper_vlan10")
	}
}

func (tr *tree) remove(name string) {
	if err := os.RemoveAll(filepath.Join(tr.root, "sys/class/net", name)); err != nil {
		tr.t.Fatal(err)
	}
}

type kinds map[string]string

func (k kinds) LinkKind(name string) (string, error) {
	if v, ok := k[name]; ok {
		return v, nil
	}
	return "", errNotFound
}

func anyFile(fs.FileInfo) bool { return true }

func TestLinks(t *testing.T) {
	tr := newTree(t)
	tr.link("eth0", linkSpec{pci: "0000:00:03.0", driver: "virtio_net", virtio: true, carrier: "1"})
	tr.link("eth1", linkSpec{pci: "0000:00:04.0", driver: "virtio_net", virtio: true, carrier: "0", operstate: "up", numa: "-1"})
	tr.link("ens5", linkSpec{pci: "0000:00:05.0", driver: "e1000", numa: "1"})
	tr.link("npdev1", linkSpec{carrier: "1"})
	tr.link("br0", linkSpec{devtype: "bridge"})
	tr.link("lo", linkSpec{loop: true})
	s := Sysfs{Root: tr.root, Kinds: kinds{"npdev1": "veth"}}
	links, err := s.Links(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Link{}
	for _, l := range links {
		got[l.Name] = l
	}
	want := map[string]Link{
		"eth0":   {Name: "eth0", Driver: "virtio_net", PCI: "0000:00:03.0", Carrier: true, NUMA: -1},
		"eth1":   {Name: "eth1", Driver: "virtio_net", PCI: "0000:00:04.0", Carrier: true, NUMA: -1},
		"ens5":   {Name: "ens5", Driver: "e1000", PCI: "0000:00:05.0", NUMA: 1},
		"npdev1": {Name: "npdev1", Driver: "veth", Carrier: true, NUMA: -1},
		"br0":    {Name: "br0", Driver: "bridge", NUMA: -1},
		"lo":     {Name: "lo", Loop: true, NUMA: -1},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s = %+v, want %+v", name, got[name], w)
		}
	}
	if n := s.PCINetdevs("0000:00:03.0"); len(n) != 1 || n[0] != "eth0" {
		t.Errorf("PCINetdevs(virtio) = %v", n)
	}
	if n := s.PCINetdevs("0000:00:05.0"); len(n) != 1 || n[0] != "ens5" {
		t.Errorf("PCINetdevs = %v", n)
	}
	routes, err := s.DefaultRouteLinks()
	if err != nil || !routes["eth0"] || !routes["eth6"] || routes["lo"] || len(routes) != 2 {
		t.Errorf("DefaultRouteLinks = %v, %v", routes, err)
	}
	if _, ok := s.link("gone"); ok {
		t.Error("a missing link was read")
	}
	if _, err := (Sysfs{Root: t.TempDir()}).Links(nil); err == nil {
		t.Error("Links without sysfs: no error")
	}
	if _, err := (Sysfs{Root: t.TempDir()}).DefaultRouteLinks(); err == nil {
		t.Error("DefaultRouteLinks without procfs: no error")
	}
}

func TestDevicePresent(t *testing.T) {
	tr := newTree(t)
	tr.write("dev/net/tun", "")
	if (Sysfs{Root: tr.root}).DevicePresent("/dev/net/tun") {
		t.Error("a regular file counts as a device node")
	}
	if !(Sysfs{Root: tr.root, IsDevice: anyFile}).DevicePresent("/dev/net/tun") {
		t.Error("DevicePresent = false")
	}
	if (Sysfs{Root: tr.root, IsDevice: anyFile}).DevicePresent("/dev/kvm") {
		t.Error("a missing node is present")
	}
	if !(Sysfs{Root: "/"}).DevicePresent("/dev/null") {
		t.Error("/dev/null is not a character device")
	}
	// In the DaemonSet the node's /dev is mounted apart from the root of sysfs.
	hostDev := newTree(t)
	hostDev.write("net/tun", "")
	if !(Sysfs{Root: tr.root + "/nowhere", HostDev: hostDev.root, IsDevice: anyFile}).DevicePresent("/dev/net/tun") {
		t.Error("the node's /dev at HostDev is not read")
	}
}

func TestMatch(t *testing.T) {
	pools, err := ParsePools([]byte(`[
		{"resourceName":"netplug.io/veth","interfacePrefix":"npdev"},
		{"resourceName":"netplug.io/byveth","driver":"veth"},
		{"resourceName":"netplug.io/virtio","driver":"virtio_net"},
		{"resourceName":"netplug.io/nic","pciAddresses":["0000:00:05.0","0000:00:07.0"]},
		{"resourceName":"netplug.io/tun","charDevices":["/dev/net/tun","/dev/vhost-net"],"shares":2}]`))
	if err != nil {
		t.Fatal(err)
	}
	links := []Link{
		{Name: "eth0", Driver: "virtio_net", PCI: "0000:00:03.0", Carrier: true}, // uplink
		{Name: "eth1", Driver: "virtio_net", PCI: "0000:00:04.0", Carrier: true},
		{Name: "ens5", Driver: "e1000", PCI: "0000:00:05.0"},
		{Name: "npdev1", Driver: "", Carrier: true},
		{Name: "npdev2", Driver: "veth", Carrier: true}, // prefix and driver: neither
		{Name: "npdev3", Master: true},
		{Name: "npdev4", Upper: true},
		{Name: "npdevbr", Driver: "bridge"},
		{Name: "npdevlo", Loop: true},
		{Name: "vethx", Driver: "veth"},
		{Name: "other", Driver: "e1000"},
	}
	present := func(p string) bool { return p == "/dev/net/tun" }
	got, excluded := Match(pools, links, map[string]bool{"eth0": true}, present)
	want := map[string][]Device{
		"netplug.io/veth":   {{ID: "npdev1", Interface: "npdev1", Healthy: true}},
		"netplug.io/byveth": {{ID: "vethx", Interface: "vethx"}},
		"netplug.io/virtio": {{ID: "0000:00:04.0", Interface: "eth1", PCI: "0000:00:04.0", Healthy: true}},
		"netplug.io/nic":    {{ID: "0000:00:05.0", Interface: "ens5", PCI: "0000:00:05.0"}},
		"netplug.io/tun": {
			{ID: "dev-net-tun-0", Path: "/dev/net/tun", Healthy: true, NUMA: -1}, {ID: "dev-net-tun-1", Path: "/dev/net/tun", Healthy: true, NUMA: -1},
			{ID: "dev-vhost-net-0", Path: "/dev/vhost-net", NUMA: -1}, {ID: "dev-vhost-net-1", Path: "/dev/vhost-net", NUMA: -1},
		},
	}
	for res, w := range want {
		if len(got[res]) != len(w) {
			t.Errorf("%s = %+v, want %+v", res, got[res], w)
			continue
		}
		for i := range w {
			if got[res][i] != w[i] {
				t.Errorf("%s[%d] = %+v, want %+v", res, i, got[res][i], w[i])
			}
		}
	}
	reasons := map[string]string{}
	for _, e := range excluded {
		reasons[e.Link] = e.Reason
	}
	for link, want := range map[string]string{
		"eth0": "default route", "npdev2": "several pools", "npdev3": "master", "npdev4": "upper",
		"npdevbr": "bridge", "npdevlo": "loopback",
	} {
		if !contains(reasons[link], want) {
			t.Errorf("%s excluded for %q, want %q", link, reasons[link], want)
		}
	}
	if _, ok := reasons["other"]; ok {
		t.Error("a link no pool matches is reported")
	}
	if charID("/dev/kvm", 0, 1) != "dev-kvm" {
		t.Error(charID("/dev/kvm", 0, 1))
	}
}

func contains(s, sub string) bool {
	return len(sub) > 0 && len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestHealth: a link that goes away or loses its carrier, and a device node removed, are
// Unhealthy; back, Healthy. A NIC netplug moved into a pod stays healthy while away.
func TestHealth(t *testing.T) {
	tr := newTree(t)
	tr.link("npdev1", linkSpec{carrier: "1"})
	tr.link("npdev2", linkSpec{carrier: "1"})
	tr.write("dev/net/tun", "")
	pools, _ := ParsePools([]byte(`[{"resourceName":"netplug.io/veth","interfacePrefix":"npdev"},{"resourceName":"netplug.io/tun","charDevices":["/dev/net/tun"]}]`))
	veth, tun := NewState(pools[0]), NewState(pools[1])
	w := &Watcher{Sysfs: Sysfs{Root: tr.root, IsDevice: anyFile}, States: []*State{veth, tun}, Allocations: fakeAllocations{"netplug.io/veth": {"npdev2": true}}}
	ctx := context.Background()
	health := func(s *State) map[string]bool {
		devs, _ := s.Devices()
		out := map[string]bool{}
		for _, d := range devs {
			out[d.ID] = d.Healthy
		}
		return out
	}
	scan := func() {
		t.Helper()
		if _, err := w.Scan(ctx); err != nil {
			t.Fatal(err)
		}
	}
	scan()
	if h := health(veth); !h["npdev1"] || !h["npdev2"] || len(h) != 2 {
		t.Fatalf("veth = %v", h)
	}
	if h := health(tun); !h["dev-net-tun"] {
		t.Fatalf("tun = %v", h)
	}
	_, changed := veth.Devices()
	tr.remove("npdev1")
	tr.write("sys/class/net/npdev2/carrier", "0\n")
	if err := os.Remove(filepath.Join(tr.root, "dev/net/tun")); err != nil {
		t.Fatal(err)
	}
	scan()
	select {
	case <-changed:
	default:
		t.Error("no change notified")
	}
	if h := health(veth); h["npdev1"] || h["npdev2"] {
		t.Fatalf("after removal: veth = %v", h)
	}
	if h := health(tun); h["dev-net-tun"] {
		t.Fatalf("after removal: tun = %v", h)
	}
	tr.link("npdev1", linkSpec{carrier: "1"})
	tr.write("sys/class/net/npdev2/carrier", "1\n")
	tr.write("dev/net/tun", "")
	scan()
	if h := health(veth); !h["npdev1"] || !h["npdev2"] {
		t.Fatalf("back: veth = %v", h)
	}
	if h := health(tun); !h["dev-net-tun"] {
		t.Fatalf("back: tun = %v", h)
	}
	// Moved into a pod: gone from the host, still healthy.
	veth.MarkInPod("npdev1", true)
	tr.remove("npdev1")
	scan()
	if h := health(veth); !h["npdev1"] {
		t.Fatalf("in a pod: veth = %v", h)
	}
	veth.MarkInPod("npdev1", false)
	scan()
	if h := health(veth); h["npdev1"] {
		t.Fatalf("out of the pod, not back on the host: veth = %v", h)
	}
	veth.MarkInPod("npdev1", true) // found in a checkpoint after a restart
	if h := health(veth); !h["npdev1"] {
		t.Fatalf("marked in a pod: veth = %v", h)
	}
	if d, ok := veth.Lookup("npdev2"); !ok || d.Interface != "npdev2" {
		t.Errorf("Lookup = %+v, %v", d, ok)
	}
	if veth.Update([]Device{{ID: "npdev2", Interface: "npdev2", Healthy: true}}) {
		t.Error("an unchanged device is a change")
	}
}

type fakeAllocations map[string]map[string]bool

func (f fakeAllocations) Allocated(context.Context) (map[string]map[string]bool, error) {
	return f, nil
}

func TestWatcherRun(t *testing.T) {
	tr := newTree(t)
	pools, _ := ParsePools([]byte(`[{"resourceName":"netplug.io/veth","interfacePrefix":"npdev"}]`))
	s := NewState(pools[0])
	tick := make(chan time.Time)
	w := &Watcher{Sysfs: Sysfs{Root: tr.root}, States: []*State{s}, Tick: tick}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	tick <- time.Now() // the first scan found nothing
	tr.link("npdev1", linkSpec{carrier: "1"})
	tick <- time.Now() // the second finds npdev1
	tick <- time.Now()
	if _, ok := s.Lookup("npdev1"); !ok {
		t.Error("npdev1 not discovered")
	}
	cancel()
	<-done
	// Without sysfs the loop logs and goes on.
	w = &Watcher{Sysfs: Sysfs{Root: t.TempDir()}, States: []*State{s}, Tick: tick}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	w.Run(ctx)
	if _, err := (&Watcher{Sysfs: Sysfs{Root: tr.root + "/sys/.."}, States: nil}).Scan(ctx); err != nil {
		t.Error(err)
	}
	noProc := newTree(t)
	noProc.link("npdev1", linkSpec{})
	_ = os.RemoveAll(filepath.Join(noProc.root, "proc"))
	if _, err := (&Watcher{Sysfs: Sysfs{Root: noProc.root}}).Scan(ctx); err == nil {
		t.Error("Scan without procfs: no error")
	}
}
