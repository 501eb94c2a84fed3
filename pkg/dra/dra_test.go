package dra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/nri/pkg/api"
	cni100 "github.com/containernetworking/cni/pkg/types/100"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"

	"github.com/netplug/netplug/pkg/apitest"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/dra/config"
	"github.com/netplug/netplug/pkg/executor"
	"github.com/netplug/netplug/pkg/multus"
	"github.com/netplug/netplug/pkg/podwriter"
)

// fakeDelegate stands in for Multus /delegate: it keeps the links of each netns.
type fakeDelegate struct {
	mu    sync.Mutex
	calls []string
	links map[string]map[string]string // netns -> interface -> config name
	fail  func(cmd string, r multus.Request) error
}

func newFakeDelegate() *fakeDelegate { return &fakeDelegate{links: map[string]map[string]string{}} }

func cfgName(r multus.Request) string {
	var c struct{ Name string }
	_ = json.Unmarshal(r.Config, &c)
	return c.Name
}

func (d *fakeDelegate) Add(_ context.Context, r multus.Request) (*cni100.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, "ADD "+r.IfName+" "+cfgName(r))
	if d.fail != nil {
		if err := d.fail("ADD", r); err != nil {
			return nil, err
		}
	}
	if d.links[r.NetNS] == nil {
		d.links[r.NetNS] = map[string]string{}
	}
	if _, ok := d.links[r.NetNS][r.IfName]; ok {
		return nil, fmt.Errorf("%w: %s", multus.ErrInterfaceExists, r.IfName)
	}
	d.links[r.NetNS][r.IfName] = cfgName(r)
	zero := 0
	_, ipnet, _ := net.ParseCIDR("10.10.0.0/24")
	ipnet.IP = net.ParseIP("10.10.0." + fmt.Sprint(len(d.links[r.NetNS])+1)).To4()
	return &cni100.Result{CNIVersion: "1.0.0",
		Interfaces: []*cni100.Interface{{Name: r.IfName, Mac: "02:00:00:00:00:0" + fmt.Sprint(len(d.links[r.NetNS])), Sandbox: r.NetNS}},
		IPs:        []*cni100.IPConfig{{Interface: &zero, Address: *ipnet}}}, nil
}

func (d *fakeDelegate) Del(_ context.Context, r multus.Request) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, "DEL "+r.IfName+" "+cfgName(r))
	if d.fail != nil {
		if err := d.fail("DEL", r); err != nil {
			return err
		}
	}
	delete(d.links[r.NetNS], r.IfName)
	return nil
}

func (d *fakeDelegate) callLog() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

type fakeNADs map[string]string

func (n fakeNADs) Config(_ context.Context, _, ns, name string) ([]byte, error) {
	if c, ok := n[ns+"/"+name]; ok {
		return []byte(c), nil
	}
	return nil, fmt.Errorf("NetworkAttachmentDefinition %s/%s not found", ns, name)
}

type fakeStatus struct {
	mu      sync.Mutex
	writes  map[string][]DeviceResult
	cleared []string
	err     error
}

func (s *fakeStatus) Clear(_ context.Context, c PreparedClaim) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleared = append(s.cleared, c.Name)
	return nil
}

func (s *fakeStatus) Write(_ context.Context, c PreparedClaim, r []DeviceResult) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.writes[c.Name] = r
	return nil
}

type fakePods struct{ changes []podwriter.Change }

func (p *fakePods) ApplyChanges(_ context.Context, _, _ string, c []podwriter.Change) error {
	p.changes = append(p.changes, c...)
	return nil
}

type fixture struct {
	t        *testing.T
	dir      string
	store    *checkpoint.Store
	claims   *ClaimStore
	delegate *fakeDelegate
	status   *fakeStatus
	pods     *fakePods
	hook     *Hook
	// pools is the node's device pools (nic_test.go): pool netplug.io/veth with the links of
	// host, rebuilt by open as a restart of netplug rebuilds them.
	pools  *devices.Source
	host   *fakeHost
	events *fakeEvents
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), delegate: newFakeDelegate(), status: &fakeStatus{writes: map[string][]DeviceResult{}}, pods: &fakePods{},
		host: newFakeHost(), events: &fakeEvents{}}
	f.open()
	t.Cleanup(func() { _ = f.store.Close(); _ = f.claims.Close() })
	return f
}

// open (re)opens the stores and the hook, like a restart of netplug.
func (f *fixture) open() {
	f.t.Helper()
	if f.store != nil {
		_ = f.store.Close()
		_ = f.claims.Close()
	}
	var err error
	if f.store, err = checkpoint.Open(context.Background(), f.dir+"/checkpoints"); err != nil {
		f.t.Fatal(err)
	}
	if f.claims, err = OpenClaimStore(f.dir + "/claims"); err != nil {
		f.t.Fatal(err)
	}
	f.pools = f.host.pools()
	f.hook = &Hook{Claims: f.claims, Records: f.store, Exec: executor.New(f.delegate, f.store).WithHostLinks(f.host),
		NADs: fakeNADs{"ns/mv": `{"cniVersion":"1.0.0","name":"mv","type":"macvlan"}`}, Status: f.status, Pods: f.pods,
		Pools: f.pools, Events: f.events}
}

func (f *fixture) driver() *Driver { return NewDriver(f.claims, f.hook).WithPools(f.pools, "node-a") }

func (f *fixture) prepare(claims ...*resourceapi.ResourceClaim) map[types.UID]kubeletplugin.PrepareResult {
	f.t.Helper()
	res, err := f.driver().PrepareResourceClaims(context.Background(), claims)
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}

func (f *fixture) records(podUID string) []checkpoint.Entry {
	f.t.Helper()
	l, err := f.store.List(podUID)
	if err != nil {
		f.t.Fatal(err)
	}
	return l.Entries
}

func sandbox(id string) *api.PodSandbox {
	return &api.PodSandbox{Id: id, Name: "p", Namespace: "ns", Uid: "uid-p",
		Linux: &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: "/var/run/netns/" + id}}}}
}

// claimWith is an allocated claim reserved for pod uid-p with one netplug.io device per config.
func claimWith(name string, configs ...string) *resourceapi.ResourceClaim {
	c := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
		Status: resourceapi.ResourceClaimStatus{
			ReservedFor: []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: "p", UID: "uid-p"}},
			Allocation:  &resourceapi.AllocationResult{}}}
	for i, cfg := range configs {
		req := fmt.Sprintf("nic%d", i)
		c.Status.Allocation.Devices.Results = append(c.Status.Allocation.Devices.Results, resourceapi.DeviceRequestAllocationResult{
			Request: req, Driver: DriverName, Pool: "node-a", Device: fmt.Sprintf("cni-%d", i)})
		c.Status.Allocation.Devices.Config = append(c.Status.Allocation.Devices.Config, resourceapi.DeviceAllocationConfiguration{
			Source: resourceapi.AllocationConfigSourceClaim, Requests: []string{req},
			DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
				Driver: DriverName, Parameters: runtime.RawExtension{Raw: []byte(cfg)}}}})
	}
	return c
}

const inlineBridge = `{"config":{"cniVersion":"1.0.0","name":"br","type":"bridge","ipam":{"type":"host-local","subnet":"10.10.0.0/24"}},"interface":"net2"}`

func TestPrepareRecordsAndReportsBadConfigPerClaim(t *testing.T) {
	f := newFixture(t)
	good := claimWith("good", `{"network":"mv","interface":"net1"}`, inlineBridge)
	bad := claimWith("bad", `{"network":"mv","interface":"net1","default-route":["1.1.1.1"]}`)
	dup := claimWith("dup", `{"network":"mv","interface":"net1"}`, `{"network":"mv","interface":"net1"}`)
	res := f.prepare(good, bad, dup)
	if r := res["uid-good"]; r.Err != nil || len(r.Devices) != 2 || r.Devices[1].DeviceName != "cni-1" || r.Devices[0].Requests[0] != "nic0" {
		t.Fatalf("good: %+v", r)
	}
	if r := res["uid-bad"]; r.Err == nil || !strings.Contains(r.Err.Error(), `ns/bad`) || !strings.Contains(r.Err.Error(), `unknown field "default-route"`) {
		t.Fatalf("bad: %v", r.Err)
	}
	if r := res["uid-dup"]; r.Err == nil || !strings.Contains(r.Err.Error(), `both ask for interface "net1"`) {
		t.Fatalf("dup: %v", r.Err)
	}
	got, err := f.claims.ForPod("uid-p")
	if err != nil || len(got) != 1 || got[0].Name != "good" || len(got[0].Devices) != 2 || got[0].Devices[1].Attachment.NAD() {
		t.Fatalf("prepared %+v %v: only the good claim is recorded", got, err)
	}
	// A bad claim plugs nothing.
	if err := f.hook.RunPodSandbox(context.Background(), sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD net1 mv", "ADD net2 br"}) {
		t.Fatalf("calls %v", calls)
	}
}

func TestRunPodSandboxPlugsReportsAndStopReleases(t *testing.T) {
	f := newFixture(t)
	f.prepare(claimWith("a", `{"network":"mv","interface":"net1","ips":["10.10.0.9/24"]}`), claimWith("b", inlineBridge))
	ctx := context.Background()
	if err := f.hook.RunPodSandbox(ctx, sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD net1 mv", "ADD net2 br"}) {
		t.Fatalf("calls %v", calls)
	}
	recs := f.records("uid-p")
	if len(recs) != 2 || recs[0].Origin != checkpoint.OriginClaim || recs[0].InFlight != "" || recs[0].Attributes.IPs[0] != "10.10.0.9/24" {
		t.Fatalf("records %+v: claim-origin, settled", recs)
	}
	if r := f.status.writes["a"]; len(r) != 1 || r[0].Result == nil || r[0].Device.Device != "cni-0" {
		t.Fatalf("status of a: %+v", r)
	}
	if len(f.pods.changes) != 2 || f.pods.changes[1].Entry == nil || f.pods.changes[1].Entry.Name != "ns/b" {
		t.Fatalf("network-status changes %+v", f.pods.changes)
	}
	// A repeated event changes nothing.
	if err := f.hook.RunPodSandbox(ctx, sandbox("sb1")); err != nil || len(f.delegate.callLog()) != 2 {
		t.Fatalf("repeat: %v, calls %v", err, f.delegate.callLog())
	}
	if err := f.hook.StopPodSandbox(ctx, sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	if err := f.hook.RemovePodSandbox(ctx, sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	if calls := f.delegate.callLog()[2:]; !slices.Equal(calls, []string{"DEL net1 mv", "DEL net2 br"}) {
		t.Fatalf("stop calls %v", calls)
	}
	if r := f.records("uid-p"); len(r) != 0 {
		t.Fatalf("records after stop %+v", r)
	}
}

func TestRunPodSandboxFailureRollsBackAndNamesTheClaim(t *testing.T) {
	f := newFixture(t)
	f.prepare(claimWith("a", `{"network":"mv","interface":"net1"}`), claimWith("b", inlineBridge))
	f.delegate.fail = func(cmd string, r multus.Request) error {
		if cmd == "ADD" && r.IfName == "net2" {
			return errors.New("bridge: IPAM exhausted")
		}
		return nil
	}
	err := f.hook.RunPodSandbox(context.Background(), sandbox("sb1"))
	if err == nil || !strings.Contains(err.Error(), "claim ns/b") || !strings.Contains(err.Error(), "IPAM exhausted") {
		t.Fatalf("error %v: want one naming the claim and the cause", err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD net1 mv", "ADD net2 br", "DEL net1 mv", "DEL net2 br"}) {
		t.Fatalf("calls %v: what was plugged (and the half-done ADD) is released", calls)
	}
	if r := f.records("uid-p"); len(r) != 0 || len(f.status.writes) != 0 || len(f.pods.changes) != 0 {
		t.Fatalf("records %+v status %v pods %v: nothing is left or reported", r, f.status.writes, f.pods.changes)
	}
	// The kubelet retries with a new sandbox; it now works.
	f.delegate.fail = nil
	if err := f.hook.RunPodSandbox(context.Background(), sandbox("sb2")); err != nil {
		t.Fatal(err)
	}
}

func TestRunPodSandboxUnknownNADFailsTheSandbox(t *testing.T) {
	f := newFixture(t)
	f.prepare(claimWith("a", `{"network":"missing","interface":"net1"}`))
	if err := f.hook.RunPodSandbox(context.Background(), sandbox("sb1")); err == nil || !strings.Contains(err.Error(), "ns/missing not found") {
		t.Fatalf("error %v", err)
	}
	if calls := f.delegate.callLog(); len(calls) != 0 {
		t.Fatalf("calls %v", calls)
	}
}

// netplug restarted between prepare and sandbox start, and died once mid-ADD: the record left
// in flight is released (DEL) and the ADD redone; a record of an older sandbox is DELeted first.
func TestRunPodSandboxAfterRestartRedoesWhatIsInFlight(t *testing.T) {
	f := newFixture(t)
	f.prepare(claimWith("a", `{"network":"mv","interface":"net1"}`))
	sb := executor.Sandbox{PodNamespace: "ns", PodName: "p", PodUID: "uid-p", ID: "sb1", NetNS: "/var/run/netns/sb1"}
	rec := executor.RecordFor(sb, config.Attachment{Namespace: "ns", Network: "mv", Interface: "net1"}.Planner(), []byte(`{"name":"mv"}`))
	rec.InFlight = checkpoint.InFlightAdd
	if err := f.store.Save(rec); err != nil {
		t.Fatal(err)
	}
	f.open()
	if err := f.hook.RunPodSandbox(context.Background(), sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"DEL net1 mv", "ADD net1 mv"}) {
		t.Fatalf("calls %v", calls)
	}
	if r := f.records("uid-p"); len(r) != 1 || r[0].InFlight != "" {
		t.Fatalf("records %+v", r)
	}
	if err := f.hook.RunPodSandbox(context.Background(), sandbox("sb2")); err != nil {
		t.Fatal(err)
	}
	if calls := f.delegate.callLog()[2:]; !slices.Equal(calls, []string{"DEL net1 mv", "ADD net1 mv"}) {
		t.Fatalf("new sandbox calls %v", calls)
	}
}

func TestRunPodSandboxRefusesANameTheSelectionHolds(t *testing.T) {
	f := newFixture(t)
	f.prepare(claimWith("a", `{"network":"mv","interface":"net1"}`))
	sb := executor.Sandbox{PodNamespace: "ns", PodName: "p", PodUID: "uid-p", ID: "sb1", NetNS: "/var/run/netns/sb1"}
	if o := executor.New(f.delegate, f.store).Adopt(sb, config.Attachment{Namespace: "ns", Network: "mv", Interface: "net1"}.Planner(), nil); !o.OK() {
		t.Fatal(o.Failure)
	}
	recs := f.records("uid-p")
	recs[0].Origin = "annotation"
	if err := f.store.Save(recs[0]); err != nil {
		t.Fatal(err)
	}
	if err := f.hook.RunPodSandbox(context.Background(), sandbox("sb1")); err == nil || !strings.Contains(err.Error(), "network selection already has") {
		t.Fatalf("error %v", err)
	}
}

func TestUnprepareReleasesWhatAMissedStopLeft(t *testing.T) {
	f := newFixture(t)
	f.prepare(claimWith("a", `{"network":"mv","interface":"net1"}`))
	if err := f.hook.RunPodSandbox(context.Background(), sandbox("sb1")); err != nil {
		t.Fatal(err)
	}
	res, err := NewDriver(f.claims, f.hook).UnprepareResourceClaims(context.Background(),
		[]kubeletplugin.NamespacedObject{{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "a"}, UID: "uid-a"}})
	if err != nil || res["uid-a"] != nil {
		t.Fatalf("unprepare %v %v", res, err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD net1 mv", "DEL net1 mv"}) {
		t.Fatalf("calls %v", calls)
	}
	if c, _ := f.claims.ForPod("uid-p"); len(c) != 0 {
		t.Fatalf("claims left %+v", c)
	}
}

func TestResourcesPublishesVirtualCNIDevices(t *testing.T) {
	r := Resources("node-a", 16)
	devs := r.Pools["node-a"].Slices[0].Devices
	if len(devs) != 16 || devs[0].Name != "cni-0" || devs[15].Name != "cni-15" ||
		*devs[3].Attributes["type"].StringValue != "cni" || !*devs[3].Attributes["virtual"].BoolValue {
		t.Fatalf("devices %+v", devs)
	}
}

func TestStatusWriterIsConflictSafe(t *testing.T) {
	kube := fake.NewClientset()
	apitest.EnforceResourceVersion(kube, "resourceclaims")
	ctx := context.Background()
	claim := claimWith("a", `{"network":"mv","interface":"net1"}`)
	claim.Status.Devices = []resourceapi.AllocatedDeviceStatus{{Driver: "other.io", Pool: "x", Device: "y"}}
	if _, err := kube.ResourceV1().ResourceClaims("ns").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pc, _, err := Prepare(claim)
	if err != nil {
		t.Fatal(err)
	}
	// Another writer changes the claim between our read and our write, once.
	raced := false
	kube.PrependReactor("update", "resourceclaims", func(a k8stestingAction) (bool, runtime.Object, error) {
		if raced {
			return false, nil, nil
		}
		raced = true
		c, _ := kube.Tracker().Get(resourceapi.SchemeGroupVersion.WithResource("resourceclaims"), "ns", "a")
		c.(*resourceapi.ResourceClaim).Labels = map[string]string{"touched": "yes"}
		c.(*resourceapi.ResourceClaim).ResourceVersion = "9999"
		_ = kube.Tracker().Update(resourceapi.SchemeGroupVersion.WithResource("resourceclaims"), c, "ns")
		return false, nil, nil
	})
	zero := 0
	_, ipnet, _ := net.ParseCIDR("10.10.0.7/24")
	ipnet.IP = net.ParseIP("10.10.0.7")
	result := &cni100.Result{CNIVersion: "1.0.0", Interfaces: []*cni100.Interface{{Name: "net1", Mac: "02:00:00:00:00:07", Sandbox: "/netns"}},
		IPs: []*cni100.IPConfig{{Interface: &zero, Address: *ipnet}}}
	w := NewStatusWriter(kube.ResourceV1(), timeoutForTests)
	if err := w.Write(ctx, pc, []DeviceResult{{Device: pc.Devices[0], Result: result}}); err != nil {
		t.Fatal(err)
	}
	if !raced {
		t.Fatal("the racing writer never ran")
	}
	got, err := kube.ResourceV1().ResourceClaims("ns").Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Devices) != 2 || got.Status.Devices[0].Driver != "other.io" {
		t.Fatalf("devices %+v: another driver's entry is kept", got.Status.Devices)
	}
	d := got.Status.Devices[1]
	if d.Driver != DriverName || d.Pool != "node-a" || d.Device != "cni-0" || len(d.Conditions) != 1 || d.Conditions[0].Type != "Ready" || d.Conditions[0].Status != metav1.ConditionTrue {
		t.Fatalf("device status %+v", d)
	}
	if d.NetworkData == nil || d.NetworkData.InterfaceName != "net1" || !slices.Equal(d.NetworkData.IPs, []string{"10.10.0.7/24"}) || d.NetworkData.HardwareAddress != "02:00:00:00:00:07" {
		t.Fatalf("networkData %+v", d.NetworkData)
	}
	var data cni100.Result
	if d.Data == nil || json.Unmarshal(d.Data.Raw, &data) != nil || data.Interfaces[0].Name != "net1" {
		t.Fatalf("data %v", d.Data)
	}
	if got.Labels["touched"] != "yes" {
		t.Fatal("the racing writer's change was lost")
	}
	// Clear removes only netplug's entry.
	if err := w.Clear(ctx, pc); err != nil {
		t.Fatal(err)
	}
	got, _ = kube.ResourceV1().ResourceClaims("ns").Get(ctx, "a", metav1.GetOptions{})
	if len(got.Status.Devices) != 1 || got.Status.Devices[0].Driver != "other.io" {
		t.Fatalf("after clear %+v", got.Status.Devices)
	}
	// A claim of the same name but another UID is not written.
	pc.UID = "someone-else"
	if err := w.Write(ctx, pc, []DeviceResult{{Device: pc.Devices[0], Result: result}}); err == nil || !strings.Contains(err.Error(), "another claim") {
		t.Fatalf("write to another claim: %v", err)
	}
}
