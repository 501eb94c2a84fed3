package devices

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

type fakePods map[string]PodDevices // by namespace/name

func (f fakePods) Pod(_ context.Context, namespace, name string) (PodDevices, error) {
	d, ok := f[namespace+"/"+name]
	if !ok {
		return nil, errors.New("podresources: connection refused")
	}
	return d, nil
}

// hostOf answers the host state of the links it has, and fails for the others.
type hostOf map[string]HostState

func (h hostOf) State(name string) (HostState, error) {
	s, ok := h[name]
	if !ok {
		return HostState{}, errors.New("link " + name + " not found")
	}
	return s, nil
}
func (h hostOf) Restore(string, HostState) error { return nil }

// nicAndTun is a source of a veth pool (npdev0..2) and a character-device pool (tun).
func nicAndTun(t *testing.T) (*Source, *State) {
	t.Helper()
	pools, err := ParsePools([]byte(`[{"resourceName":"netplug.io/veth","interfacePrefix":"npdev"},{"resourceName":"netplug.io/tun","charDevices":["/dev/net/tun"]}]`))
	if err != nil {
		t.Fatal(err)
	}
	veth := vethState("npdev0", "npdev1", "npdev2")
	veth.Pool = pools[0]
	return &Source{States: map[string]*State{"netplug.io/veth": veth, "netplug.io/tun": NewState(pools[1])}}, veth
}

func limitsPod(init, main corev1.ResourceList) *corev1.Pod {
	return &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "i", Resources: corev1.ResourceRequirements{Limits: init}}},
		Containers:     []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Limits: main}}}}}
}

// A pod requests NICs when a limit of any container, init containers included, names a NIC
// pool; a character-device pool or a resource of no pool is not a NIC.
func TestSourceRequests(t *testing.T) {
	src, _ := nicAndTun(t)
	one := resource.MustParse("1")
	for _, tc := range []struct {
		name       string
		init, main corev1.ResourceList
		want       bool
	}{
		{"a NIC pool", nil, corev1.ResourceList{"netplug.io/veth": one}, true},
		{"a NIC pool in an init container", corev1.ResourceList{"netplug.io/veth": one}, nil, true},
		{"a character-device pool", nil, corev1.ResourceList{"netplug.io/tun": one}, false},
		{"no pool of this node", nil, corev1.ResourceList{"intel.com/sriov": one, corev1.ResourceCPU: one}, false},
	} {
		if got := src.Requests(limitsPod(tc.init, tc.main)); got != tc.want {
			t.Errorf("%s: Requests = %v, want %v", tc.name, got, tc.want)
		}
	}
	if !src.NICPool("netplug.io/veth") || src.NICPool("netplug.io/tun") || src.NICPool("intel.com/sriov") {
		t.Error("NICPool says a pool that hands out no NICs does")
	}
}

// PodNICs lists the NICs of the pod's allocations, by interface name, each with the
// host-device config that carries its host addresses; devices of other pools, or no longer
// known, are left out; a NIC whose host state cannot be read moves without it.
func TestSourcePodNICs(t *testing.T) {
	src, _ := nicAndTun(t)
	addr := HostState{Addresses: []netip.Prefix{netip.MustParsePrefix("10.1.0.2/24")}, MTU: 1400}
	src.Host = hostOf{"npdev2": addr}
	src.Pods = fakePods{"ns/p": {"netplug.io/veth": {"npdev2", "npdev0", "gone"}, "netplug.io/tun": {"dev-net-tun"}, "intel.com/sriov": {"vf0"}}}
	pod := &corev1.Pod{}
	pod.Namespace, pod.Name = "ns", "p"
	nics, hostErrs, err := src.PodNICs(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nics {
		names = append(names, n.Device.Interface)
		if n.Pool.ResourceName != "netplug.io/veth" {
			t.Errorf("NIC %s of pool %s", n.Device.Interface, n.Pool.ResourceName)
		}
	}
	if !slices.Equal(names, []string{"npdev0", "npdev2"}) {
		t.Fatalf("NICs %v, want npdev0 and npdev2 in order", names)
	}
	if want := HostDeviceConfig(nics[1].Pool, "npdev2", addr); string(nics[1].Config) != string(want) {
		t.Errorf("config of npdev2 %s, want %s", nics[1].Config, want)
	}
	if want := HostDeviceConfig(nics[0].Pool, "npdev0", HostState{}); string(nics[0].Config) != string(want) {
		t.Errorf("config of npdev0 %s, want %s (no host state)", nics[0].Config, want)
	}
	if len(hostErrs) != 1 || hostErrs[0].Error() != "link npdev0 not found" {
		t.Errorf("host errors %v, want npdev0's", hostErrs)
	}
	pod.Name = "unknown"
	if _, _, err := src.PodNICs(context.Background(), pod); err == nil {
		t.Error("PodResources failed, PodNICs did not")
	}
}

// A NIC marked in a pod is not free for a hot-plug; back on the host, it is. Restore holds a
// device for the owner a checkpoint names. Resources of no pool are ignored.
func TestSourceMarkInPodAndRestore(t *testing.T) {
	src, veth := nicAndTun(t)
	ctx := context.Background()
	src.MarkInPod("netplug.io/veth", "npdev0", true)
	src.MarkInPod("intel.com/sriov", "vf0", true)
	src.Restore("netplug.io/veth", "npdev1", Owner("ns", "p", "net1"))
	src.Restore("intel.com/sriov", "vf0", "x")
	if veth.Reserved() != 1 {
		t.Fatalf("reserved %d, want npdev1", veth.Reserved())
	}
	r, err := src.Reserve(ctx, "netplug.io/veth", Owner("ns", "q", "net1"))
	if err != nil || r.Device.ID != "npdev2" {
		t.Fatalf("Reserve = %+v, %v; want npdev2 (npdev0 is in a pod, npdev1 restored)", r, err)
	}
	src.MarkInPod("netplug.io/veth", "npdev0", false)
	if r, err := src.Reserve(ctx, "netplug.io/veth", "ns/r:net1"); err != nil || r.Device.ID != "npdev0" {
		t.Fatalf("Reserve = %+v, %v; want npdev0 back on the host", r, err)
	}
	if got := Owner("ns", "p", "net1"); got != "ns/p:net1" {
		t.Errorf("Owner = %q", got)
	}
}

// A device whose host state cannot be read is not handed out: it goes back to the pool.
func TestSourceReserveGivesBackWhatItCannotRead(t *testing.T) {
	src, veth := nicAndTun(t)
	src.Host = hostOf{}
	if _, err := src.Reserve(context.Background(), "netplug.io/veth", "ns/p:net1"); err == nil {
		t.Fatal("Reserve without the device's host state succeeded")
	}
	if n := veth.Reserved(); n != 0 {
		t.Fatalf("%d devices reserved after a failed Reserve", n)
	}
}

// The watcher tells OnFree of a pool whose free devices rose since the last scan (one came back
// healthy, the kubelet released one), and not on the first scan or when nothing rose.
func TestWatcherTellsWhenAPoolHasMoreFreeDevices(t *testing.T) {
	tr := newTree(t)
	tr.link("npdev1", linkSpec{carrier: "0"})
	pools, _ := ParsePools([]byte(`[{"resourceName":"netplug.io/veth","interfacePrefix":"npdev"}]`))
	var told []string
	w := &Watcher{Sysfs: Sysfs{Root: tr.root}, States: []*State{NewState(pools[0])}, OnFree: func(r string) { told = append(told, r) }}
	for i, step := range []struct {
		name string
		edit func()
		told int
	}{
		{"first scan", func() {}, 0},
		{"back healthy", func() { tr.write("sys/class/net/npdev1/carrier", "1\n") }, 1},
		{"nothing changed", func() {}, 1},
		{"allocated by the kubelet", func() { w.Allocations = fakeAllocations{"netplug.io/veth": {"npdev1": true}} }, 1},
		{"released by the kubelet", func() { w.Allocations = fakeAllocations{} }, 2},
		{"PodResources down: counted as free", func() { w.Allocations = brokenAllocs{} }, 2},
	} {
		step.edit()
		if _, err := w.Scan(context.Background()); err != nil {
			t.Fatalf("step %d (%s): %v", i, step.name, err)
		}
		if len(told) != step.told {
			t.Fatalf("step %d (%s): told %v, want %d times", i, step.name, told, step.told)
		}
	}
	if told[0] != "netplug.io/veth" {
		t.Fatalf("told %v", told)
	}
}
