package dra

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"

	"github.com/netplug/netplug/pkg/apitest"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/multus"
)

const vethPool = "netplug.io/veth"

// fakeHost is the node's links of pool netplug.io/veth (prefix npdev) and pool netplug.io/nic
// (PCI NICs), their host addresses (HostLinks), and the kubelet's allocations (PodResources).
type fakeHost struct {
	mu        sync.Mutex
	links     map[string]devices.Device // by ID
	addrs     map[string][]netip.Prefix // by link
	restored  []string                  // "link addr,addr"
	allocated map[string]map[string]bool
	allocErr  error
}

func newFakeHost() *fakeHost {
	return &fakeHost{
		links: map[string]devices.Device{
			"npdev30": {ID: "npdev30", Interface: "npdev30", Healthy: true},
			"npdev31": {ID: "npdev31", Interface: "npdev31", Healthy: true},
		},
		addrs:     map[string][]netip.Prefix{"npdev30": {netip.MustParsePrefix("10.219.0.2/24")}},
		allocated: map[string]map[string]bool{},
	}
}

func (h *fakeHost) State(name string) (devices.HostState, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return devices.HostState{Addresses: slices.Clone(h.addrs[name]), MTU: 1500}, nil
}

func (h *fakeHost) Restore(name string, s devices.HostState) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var a []string
	for _, p := range s.Addresses {
		a = append(a, p.String())
	}
	h.restored = append(h.restored, name+" "+strings.Join(a, ","))
	return nil
}

func (h *fakeHost) Allocated(context.Context) (map[string]map[string]bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.allocated, h.allocErr
}

// pools is the node's pools as netplug's start builds them: discovery of the host's links.
func (h *fakeHost) pools() *devices.Source {
	h.mu.Lock()
	defer h.mu.Unlock()
	veth := devices.NewState(devices.Pool{ResourceName: vethPool, InterfacePrefix: "npdev"})
	nic := devices.NewState(devices.Pool{ResourceName: "netplug.io/nic", PCIAddresses: []string{"0000:00:04.0"}})
	tun := devices.NewState(devices.Pool{ResourceName: "netplug.io/tun", CharDevices: []string{"/dev/net/tun"}})
	var vs, ns []devices.Device
	for _, d := range h.links {
		if d.PCI != "" {
			ns = append(ns, d)
		} else {
			vs = append(vs, d)
		}
	}
	veth.Update(vs)
	nic.Update(ns)
	tun.Update([]devices.Device{{ID: "dev-net-tun", Path: "/dev/net/tun", Healthy: true}})
	return &devices.Source{States: map[string]*devices.State{vethPool: veth, "netplug.io/nic": nic, "netplug.io/tun": tun},
		Host: h, Allocations: h}
}

type fakeEvents struct {
	mu     sync.Mutex
	events []string
}

func (e *fakeEvents) PodWarning(namespace, name, uid, reason, message string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, fmt.Sprintf("%s/%s %s %s: %s", namespace, name, uid, reason, message))
}

func (e *fakeEvents) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.events)
}

// nicClaim is a claim reserved for pod uid-p, allocated the pool device named device of the
// node's NIC pool, with an opaque config (none when cfg is "").
func nicClaim(name, device, cfg string) *resourceapi.ResourceClaim {
	c := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
		Status: resourceapi.ResourceClaimStatus{
			ReservedFor: []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: "p", UID: "uid-p"}},
			Allocation: &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{Results: []resourceapi.DeviceRequestAllocationResult{
				{Request: "nic", Driver: DriverName, Pool: NICPoolName("node-a"), Device: device}}}}}}
	if cfg != "" {
		c.Status.Allocation.Devices.Config = []resourceapi.DeviceAllocationConfiguration{{Source: resourceapi.AllocationConfigSourceClaim,
			DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
				Driver: DriverName, Parameters: runtime.RawExtension{Raw: []byte(cfg)}}}}}
	}
	return c
}

// health is the device's health as the kubelet's device plugin reports it.
func health(t *testing.T, pools *devices.Source, resource, id string) bool {
	t.Helper()
	devs, _ := pools.States[resource].Devices()
	for _, d := range devs {
		if d.ID == id {
			return d.Healthy
		}
	}
	t.Fatalf("no device %s in %s", id, resource)
	return false
}

func TestNICDeviceName(t *testing.T) {
	for id, want := range map[string]string{
		"npdev30":               "nic-npdev30",
		"0000:00:04.0":          "nic-0000-00-04-0",
		"Eth_1.100":             "nic-eth-1-100",
		"x-":                    "nic-x",
		strings.Repeat("a", 70): "nic-" + strings.Repeat("a", 59),
	} {
		if got := NICDeviceName(id); got != want {
			t.Errorf("NICDeviceName(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestNodeResourcesPublishesThePoolNICs(t *testing.T) {
	h := newFakeHost()
	h.links["0000:00:04.0"] = devices.Device{ID: "0000:00:04.0", Interface: "ens4", PCI: "0000:00:04.0", Healthy: true}
	h.links["npdev32"] = devices.Device{ID: "npdev32", Interface: "npdev32"}                // no carrier
	h.links["npdev33"] = devices.Device{ID: "npdev33", Interface: "npdev33", Healthy: true} // the kubelet's
	h.allocated[vethPool] = map[string]bool{"npdev33": true}
	pools := h.pools()
	if _, err := pools.States[vethPool].Reserve("hot-plug", nil); err != nil { // npdev30, hot-plugged
		t.Fatal(err)
	}
	r := NodeResources(context.Background(), "node-a", 2, pools)
	if cni := r.Pools["node-a"].Slices[0].Devices; len(cni) != 2 || cni[0].Name != "cni-0" {
		t.Fatalf("CNI devices %+v", cni)
	}
	nic, ok := r.Pools["node-a/nic"]
	if !ok || len(nic.Slices) != 1 {
		t.Fatalf("pools %v: want node-a/nic, one slice", r.Pools)
	}
	var names []string
	for _, d := range nic.Slices[0].Devices {
		names = append(names, d.Name)
	}
	// npdev30 is reserved (hot-plugged), npdev32 unhealthy, npdev33 the kubelet's; tun is no NIC.
	if !slices.Equal(names, []string{"nic-0000-00-04-0", "nic-npdev31"}) {
		t.Fatalf("published %v", names)
	}
	pci, veth := nic.Slices[0].Devices[0].Attributes, nic.Slices[0].Devices[1].Attributes
	if *pci["ifName"].StringValue != "ens4" || *pci["pciAddress"].StringValue != "0000:00:04.0" || *pci["virtual"].BoolValue ||
		*pci["pool"].StringValue != "netplug.io/nic" || *pci["type"].StringValue != "nic" {
		t.Fatalf("PCI NIC attributes %v", pci)
	}
	if *veth["ifName"].StringValue != "npdev31" || veth["pciAddress"].StringValue != nil || !*veth["virtual"].BoolValue ||
		*veth["pool"].StringValue != vethPool || *veth["type"].StringValue != "nic" {
		t.Fatalf("veth attributes %v", veth)
	}
	// Without NIC pools there is no NIC pool in the slice.
	if r := NodeResources(context.Background(), "node-a", 2, nil); len(r.Pools) != 1 {
		t.Fatalf("pools %v", r.Pools)
	}
}

func TestNodeResourcesSplitsSlicesOf128(t *testing.T) {
	h := newFakeHost()
	for i := range 130 {
		id := fmt.Sprintf("npdevx%03d", i)
		h.links[id] = devices.Device{ID: id, Interface: id, Healthy: true}
	}
	nic := NodeResources(context.Background(), "node-a", 1, h.pools()).Pools["node-a/nic"]
	if len(nic.Slices) != 2 || len(nic.Slices[0].Devices) != 128 || len(nic.Slices[1].Devices) != 4 {
		t.Fatalf("slices %d", len(nic.Slices))
	}
}

type fakePublisher struct {
	mu   sync.Mutex
	got  [][]string
	kick chan struct{}
}

func (p *fakePublisher) PublishResources(_ context.Context, r resourceslice.DriverResources) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for _, s := range r.Pools["node-a/nic"].Slices {
		for _, d := range s.Devices {
			names = append(names, d.Name)
		}
	}
	p.got = append(p.got, names)
	p.kick <- struct{}{}
	return nil
}

func TestPublishNICsRepublishesWhenThePoolsChange(t *testing.T) {
	h := newFakeHost()
	pools := h.pools()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &fakePublisher{kick: make(chan struct{}, 10)}
	done := make(chan struct{})
	go func() { PublishNICs(ctx, p, "node-a", 1, pools, time.Hour); close(done) }()
	wait := func(want ...string) {
		t.Helper()
		select {
		case <-p.kick:
		case <-time.After(timeoutForTests):
			t.Fatalf("no publish; want %v", want)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if got := p.got[len(p.got)-1]; !slices.Equal(got, want) {
			t.Fatalf("published %v, want %v", got, want)
		}
	}
	wait("nic-npdev30", "nic-npdev31")
	// A device appears; one disappears from the host; one is reserved.
	pools.States[vethPool].Update([]devices.Device{{ID: "npdev30", Interface: "npdev30", Healthy: true},
		{ID: "npdev34", Interface: "npdev34", Healthy: true}})
	wait("nic-npdev30", "nic-npdev34")
	pools.Restore(vethPool, "npdev30", "claim ns/c")
	wait("nic-npdev34")
	pools.Unreserve(vethPool, "npdev30")
	wait("nic-npdev30", "nic-npdev34")
	cancel()
	<-done
}

func TestDeviceClaimMovesTheNICInAndOut(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	kube := fake.NewClientset()
	apitest.EnforceResourceVersion(kube, "resourceclaims")
	claim := nicClaim("c", "nic-npdev30", `{"interface":"net1"}`)
	if _, err := kube.ResourceV1().ResourceClaims("ns").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.hook.Status = NewStatusWriter(kube.ResourceV1(), timeoutForTests)

	res := f.prepare(claim)
	if r := res["uid-c"]; r.Err != nil || len(r.Devices) != 1 || r.Devices[0].PoolName != "node-a/nic" || r.Devices[0].DeviceName != "nic-npdev30" {
		t.Fatalf("prepare %+v", r)
	}
	got, _, _ := f.claims.Get("uid-c")
	if n := got.Devices[0].NIC; n == nil || *n != (PreparedNIC{Pool: vethPool, ID: "npdev30", Interface: "npdev30"}) || got.Devices[0].Attachment.Interface != "net1" {
		t.Fatalf("prepared %+v", got.Devices[0])
	}
	// Reserved from prepare on: Unhealthy to the kubelet, never picked by hot-plug.
	if health(t, f.pools, vethPool, "npdev30") {
		t.Fatal("npdev30 is healthy to the kubelet while a claim holds it")
	}
	if d, err := f.pools.States[vethPool].Reserve("hot-plug", nil); err != nil || d.ID != "npdev31" {
		t.Fatalf("hot-plug picked %v %v, want npdev31", d.ID, err)
	}

	if err := f.hook.RunPodSandbox(ctx, sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD net1 netplug-veth"}) {
		t.Fatalf("calls %v", calls)
	}
	recs := f.records("uid-p")
	if len(recs) != 1 || recs[0].Origin != checkpoint.OriginClaim || recs[0].InFlight != "" || recs[0].Device == nil ||
		recs[0].Device.ID != "npdev30" || !slices.Equal(recs[0].Device.HostAddresses, []string{"10.219.0.2/24"}) {
		t.Fatalf("records %+v", recs)
	}
	var sent struct {
		Type, Device string
		IPAM         struct{ Addresses []struct{ Address string } }
	}
	if err := json.Unmarshal(recs[0].Config, &sent); err != nil || sent.Type != "host-device" || sent.Device != "npdev30" ||
		len(sent.IPAM.Addresses) != 1 || sent.IPAM.Addresses[0].Address != "10.219.0.2/24" {
		t.Fatalf("config %s: host-device of npdev30 with its host address", recs[0].Config)
	}
	if len(f.pods.changes) != 1 || f.pods.changes[0].Interface != "net1" || f.pods.changes[0].Entry.Name != "ns/c" {
		t.Fatalf("network-status %+v", f.pods.changes)
	}
	stored, err := kube.ResourceV1().ResourceClaims("ns").Get(ctx, "c", metav1.GetOptions{})
	if err != nil || len(stored.Status.Devices) != 1 {
		t.Fatalf("status %+v %v", stored.Status.Devices, err)
	}
	d := stored.Status.Devices[0]
	if d.Pool != "node-a/nic" || d.Device != "nic-npdev30" || d.NetworkData == nil || d.NetworkData.InterfaceName != "net1" ||
		len(d.NetworkData.IPs) != 1 || d.NetworkData.HardwareAddress == "" || d.Conditions[0].Status != metav1.ConditionTrue {
		t.Fatalf("device status %+v", d)
	}

	// The sandbox stops: the NIC goes back to the host with its address, and stays the claim's.
	if err := f.hook.StopPodSandbox(ctx, sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD net1 netplug-veth", "DEL net1 netplug-veth"}) {
		t.Fatalf("calls %v", calls)
	}
	if !slices.Equal(f.host.restored, []string{"npdev30 10.219.0.2/24"}) {
		t.Fatalf("restored %v", f.host.restored)
	}
	if len(f.records("uid-p")) != 0 || health(t, f.pools, vethPool, "npdev30") {
		t.Fatal("after stop: no record, and the NIC still reserved until unprepare")
	}

	// Unprepare gives it back to the pool and clears the claim's status.
	out, err := f.driver().UnprepareResourceClaims(ctx, []kubeletplugin.NamespacedObject{{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "c"}, UID: "uid-c"}})
	if err != nil || out["uid-c"] != nil {
		t.Fatalf("unprepare %v %v", out, err)
	}
	if !health(t, f.pools, vethPool, "npdev30") {
		t.Fatal("npdev30 still reserved after unprepare")
	}
	if stored, _ := kube.ResourceV1().ResourceClaims("ns").Get(ctx, "c", metav1.GetOptions{}); len(stored.Status.Devices) != 0 {
		t.Fatalf("status after unprepare %+v", stored.Status.Devices)
	}
	if c, ok, _ := f.claims.Get("uid-c"); ok {
		t.Fatalf("record left %+v", c)
	}
}

func TestDeviceClaimUnderItsOwnNameAndUnprepareWithoutStop(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if r := f.prepare(nicClaim("c", "nic-npdev31", ""))["uid-c"]; r.Err != nil {
		t.Fatal(r.Err)
	}
	if err := f.hook.RunPodSandbox(ctx, sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD npdev31 netplug-veth"}) {
		t.Fatalf("calls %v", calls)
	}
	// A missed StopPodSandbox (netplug was down): unprepare DELs it, then frees it.
	out, err := f.driver().UnprepareResourceClaims(ctx, []kubeletplugin.NamespacedObject{{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "c"}, UID: "uid-c"}})
	if err != nil || out["uid-c"] != nil {
		t.Fatalf("unprepare %v %v", out, err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD npdev31 netplug-veth", "DEL npdev31 netplug-veth"}) {
		t.Fatalf("calls %v", calls)
	}
	if !health(t, f.pools, vethPool, "npdev31") || len(f.records("uid-p")) != 0 || !slices.Equal(f.status.cleared, []string{"c"}) {
		t.Fatalf("after unprepare: healthy %v, records %v, cleared %v", health(t, f.pools, vethPool, "npdev31"), f.records("uid-p"), f.status.cleared)
	}
}

func TestDeviceClaimRefusesANICThatIsNotFree(t *testing.T) {
	f := newFixture(t)
	if _, err := f.pools.States[vethPool].Reserve("hot-plug", nil); err != nil { // npdev30
		t.Fatal(err)
	}
	f.host.allocated[vethPool] = map[string]bool{"npdev31": true}
	res := f.prepare(nicClaim("hot", "nic-npdev30", ""), nicClaim("kubelet", "nic-npdev31", ""), nicClaim("gone", "nic-npdev99", ""),
		nicClaim("cni-config", "nic-npdev31", `{"network":"mv","interface":"net1"}`))
	for name, want := range map[string]string{
		"hot":        "is not free on this node",
		"kubelet":    "is not free on this node",
		"gone":       "is not free on this node",
		"cni-config": `unknown field "network"`,
	} {
		if err := res[types.UID("uid-"+name)].Err; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	if c, _ := f.claims.ForPod("uid-p"); len(c) != 0 {
		t.Fatalf("recorded %+v", c)
	}
	// The kubelet's allocation is checked again when reserving, strictly: PodResources must answer.
	delete(f.host.allocated, vethPool)
	f.host.allocErr = fmt.Errorf("PodResources down")
	if err := f.prepare(nicClaim("c", "nic-npdev31", ""))["uid-c"].Err; err == nil || !strings.Contains(err.Error(), "PodResources down") {
		t.Fatalf("prepare without PodResources: %v", err)
	}
	if !health(t, f.pools, vethPool, "npdev31") {
		t.Fatal("a failed prepare left npdev31 reserved")
	}
	// A node without NIC pools refuses NIC devices.
	f.pools = nil
	if err := f.prepare(nicClaim("c", "nic-npdev31", ""))["uid-c"].Err; err == nil || !strings.Contains(err.Error(), "no NIC pool") {
		t.Fatalf("prepare without pools: %v", err)
	}
}

func TestDeviceClaimFailedMoveRollsBackAndWarns(t *testing.T) {
	f := newFixture(t)
	f.prepare(claimWith("a", `{"network":"mv","interface":"net1"}`), nicClaim("c", "nic-npdev30", ""))
	f.delegate.fail = func(cmd string, r multus.Request) error {
		if cmd == "ADD" && r.IfName == "npdev30" {
			return fmt.Errorf("host-device: link npdev30 not found")
		}
		return nil
	}
	err := f.hook.RunPodSandbox(context.Background(), sandbox("sb1"))
	if err == nil || !strings.Contains(err.Error(), "claim ns/c") {
		t.Fatalf("error %v", err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD net1 mv", "ADD npdev30 netplug-veth", "DEL net1 mv", "DEL npdev30 netplug-veth"}) {
		t.Fatalf("calls %v", calls)
	}
	if ev := f.events.list(); len(ev) != 1 || !strings.HasPrefix(ev[0], "ns/p uid-p ClaimPlugFailed: ") || !strings.Contains(ev[0], "link npdev30 not found") {
		t.Fatalf("events %q: one ClaimPlugFailed Warning with the message", ev)
	}
	if health(t, f.pools, vethPool, "npdev30") {
		t.Fatal("a failed sandbox freed the claim's NIC: the kubelet retries it")
	}
}

func TestRunPodSandboxFailureIsAWarningOnThePod(t *testing.T) {
	f := newFixture(t)
	f.prepare(claimWith("a", `{"network":"missing","interface":"net1"}`))
	if err := f.hook.RunPodSandbox(context.Background(), sandbox("sb1")); err == nil {
		t.Fatal("want an error")
	}
	if ev := f.events.list(); len(ev) != 1 || !strings.Contains(ev[0], "ClaimPlugFailed: netplug.io: claim ns/a request nic0: network ns/missing") {
		t.Fatalf("events %q", ev)
	}
	// A pod without claims, or a sandbox that works, gets none.
	other := sandbox("sb2")
	other.Uid = "uid-other"
	if err := f.hook.RunPodSandbox(context.Background(), other); err != nil || len(f.events.list()) != 1 {
		t.Fatalf("%v %q", err, f.events.list())
	}
	// The recorder's form: a Warning on the pod.
	rec := record.NewFakeRecorder(1)
	RecorderEvents{Recorder: rec}.PodWarning("ns", "p", "uid-p", ReasonClaimPlugFailed, "boom")
	if e := <-rec.Events; e != "Warning ClaimPlugFailed boom" {
		t.Fatalf("event %q", e)
	}
}

func TestUnprepareClearsTheStatusItWrote(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	kube := fake.NewClientset()
	apitest.EnforceResourceVersion(kube, "resourceclaims")
	claim := claimWith("a", `{"network":"mv","interface":"net1"}`)
	claim.Status.Devices = []resourceapi.AllocatedDeviceStatus{{Driver: "other.io", Pool: "x", Device: "y"}}
	if _, err := kube.ResourceV1().ResourceClaims("ns").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.hook.Status = NewStatusWriter(kube.ResourceV1(), timeoutForTests)
	f.prepare(claim)
	if err := f.hook.RunPodSandbox(ctx, sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	if err := f.hook.StopPodSandbox(ctx, sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	if c, _ := kube.ResourceV1().ResourceClaims("ns").Get(ctx, "a", metav1.GetOptions{}); len(c.Status.Devices) != 2 {
		t.Fatalf("status before unprepare %+v", c.Status.Devices)
	}
	unprepare := func(name string) error {
		out, err := f.driver().UnprepareResourceClaims(ctx, []kubeletplugin.NamespacedObject{{NamespacedName: types.NamespacedName{Namespace: "ns", Name: name}, UID: types.UID("uid-" + name)}})
		if err != nil {
			return err
		}
		return out[types.UID("uid-"+name)]
	}
	if err := unprepare("a"); err != nil {
		t.Fatal(err)
	}
	c, _ := kube.ResourceV1().ResourceClaims("ns").Get(ctx, "a", metav1.GetOptions{})
	if len(c.Status.Devices) != 1 || c.Status.Devices[0].Driver != "other.io" {
		t.Fatalf("status after unprepare %+v: only the other driver's entry is left", c.Status.Devices)
	}
	// A claim deleted before its unprepare has nothing left to clear.
	gone := claimWith("gone", `{"network":"mv","interface":"net3"}`)
	f.prepare(gone)
	if err := unprepare("gone"); err != nil {
		t.Fatalf("unprepare of a deleted claim: %v", err)
	}
}

// netplug restarted between PrepareResourceClaims and the sandbox's start: the prepared claims
// are found in the store, and the pool NIC is the claim's again before anything can pick it.
func TestPreparedClaimsSurviveARestart(t *testing.T) {
	f := newFixture(t)
	f.prepare(claimWith("a", inlineBridge), nicClaim("c", "nic-npdev30", `{"interface":"net1"}`))
	f.open() // a restart: new stores, pools rediscovered and empty of reservations
	if !health(t, f.pools, vethPool, "npdev30") {
		t.Fatal("fixture: a restart starts with no reservation")
	}
	if n, err := RestoreReservations(f.claims, f.pools); err != nil || n != 1 {
		t.Fatalf("restored %d %v", n, err)
	}
	if health(t, f.pools, vethPool, "npdev30") {
		t.Fatal("npdev30 is free after the restart although claim c holds it")
	}
	if d, err := f.pools.States[vethPool].Reserve("hot-plug", nil); err != nil || d.ID != "npdev31" {
		t.Fatalf("hot-plug picked %v %v", d.ID, err)
	}
	if err := f.hook.RunPodSandbox(context.Background(), sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD net2 br", "ADD net1 netplug-veth"}) {
		t.Fatalf("calls %v", calls)
	}
	// The kubelet may prepare the claim again (its own restart): the NIC, reserved and in the
	// pod by now, is found in the claim's record.
	if r := f.prepare(nicClaim("c", "nic-npdev30", `{"interface":"net1"}`))["uid-c"]; r.Err != nil {
		t.Fatalf("prepare again: %v", r.Err)
	}
}

// The annotation path's pool NICs (a hot-plugged one, one moved in at start) go back to the host
// and the pool when their sandbox stops, before the runtime destroys its netns; claims are
// released as before, and other records are left to the controller.
func TestStopPodSandboxReturnsTheAnnotationPathsNICs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.pools.States[vethPool].Reserve("ns/p:net1", nil); err != nil {
		t.Fatal(err)
	}
	reserved, _ := f.pools.States[vethPool].Devices()
	var id string
	for _, d := range reserved {
		if !d.Healthy {
			id = d.ID
		}
	}
	base := checkpoint.Entry{PodNamespace: "ns", PodName: "p", PodUID: "uid-p", SandboxID: "sb1", NetNS: "/var/run/netns/sb1",
		Namespace: "ns", Config: []byte(`{"cniVersion":"0.4.0","name":"hd","type":"host-device"}`)}
	hot, bridge := base, base
	hot.Network, hot.Interface, hot.Origin = "hd", "net1", checkpoint.OriginAnnotation
	hot.Device = &checkpoint.Device{Pool: vethPool, ID: id, Interface: id, HostAddresses: []string{"10.219.0.9/24"}}
	bridge.Network, bridge.Interface, bridge.Origin, bridge.Config = "br", "net2", checkpoint.OriginAnnotation, []byte(`{"name":"br"}`)
	for _, e := range []checkpoint.Entry{hot, bridge} {
		if err := f.store.Save(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.hook.StopPodSandbox(ctx, sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"DEL net1 hd"}) {
		t.Fatalf("calls %v: only the NIC goes back here", calls)
	}
	if recs := f.records("uid-p"); len(recs) != 1 || recs[0].Interface != "net2" {
		t.Fatalf("records %+v", recs)
	}
	if !health(t, f.pools, vethPool, id) || !slices.Equal(f.host.restored, []string{id + " 10.219.0.9/24"}) {
		t.Fatalf("%s not back in the pool with its address (restored %v)", id, f.host.restored)
	}
}
