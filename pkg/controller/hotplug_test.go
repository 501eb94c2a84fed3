package controller

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/podwriter"
)

const hotPool = "netplug.io/veth"

// kubeletAllocations is what PodResources says the kubelet allocated, by resource.
type kubeletAllocations map[string]map[string]bool

func (a kubeletAllocations) Allocated(context.Context) (map[string]map[string]bool, error) {
	return a, nil
}

// pool is a real devices.Source over an in-memory pool of veths npdev0..npdevN-1.
func pool(t *testing.T, n int, allocated kubeletAllocations) (*devices.Source, *devices.State) {
	t.Helper()
	st := devices.NewState(devices.Pool{ResourceName: hotPool, InterfacePrefix: "npdev"})
	var found []devices.Device
	for i := 0; i < n; i++ {
		name := "npdev" + string(rune('0'+i))
		found = append(found, devices.Device{ID: name, Interface: name, Healthy: true})
	}
	st.Update(found)
	return &devices.Source{States: map[string]*devices.State{hotPool: st}, Allocations: allocated}, st
}

// health is the pool as the kubelet sees it: device ID -> healthy.
func health(st *devices.State) map[string]bool {
	devs, _ := st.Devices()
	out := map[string]bool{}
	for _, d := range devs {
		out[d.ID] = d.Healthy
	}
	return out
}

// hostDeviceNAD is a host-device network tied to a pool by resourceName, naming no device.
func hostDeviceNAD(ns, name, resource string) *nadv1.NetworkAttachmentDefinition {
	return &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{ResourceNameAnnot: resource}},
		Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: `{"cniVersion":"0.4.0","name":"` + name + `","type":"host-device"}`},
	}
}

// hotplugFixture is a fixture of pods with the pool devs and network ns/hd, a host-device
// network of pool hotPool.
func hotplugFixture(t *testing.T, devs Devices, pods ...*corev1.Pod) *fixture {
	t.Helper()
	return newFixture(t, pods, []*nadv1.NetworkAttachmentDefinition{hostDeviceNAD("ns", "hd", hotPool)}, func(o *Options) { o.Devices = devs })
}

// Issue 14: an element whose NAD names a pool takes a free device of it: recorded before the
// ADD, written into the config sent, out of the kubelet's reach while plugged, and given back
// (same config with the DEL) when the element goes. A bridge element beside it is unaffected.
func TestSyncHotplugsAPoolDevice(t *testing.T) {
	t.Parallel()
	src, st := pool(t, 2, kubeletAllocations{hotPool: {"npdev0": true}}) // the kubelet holds npdev0
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "")},
		append(nads("ns/br"), hostDeviceNAD("ns", "hd", hotPool)), func(o *Options) { o.Devices = src })
	f.annotate("ns", "p", "hd@net1,br@net2")
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD ns/p net1 hd", "ADD ns/p net2 br"}) &&
		!slices.Equal(calls, []string{"ADD ns/p net2 br", "ADD ns/p net1 hd"}) {
		t.Fatalf("calls %v", calls)
	}
	var sent string
	for _, r := range f.delegate.sent {
		if r.IfName == "net1" {
			sent = string(r.Config)
		}
	}
	if !strings.Contains(sent, `"device":"npdev1"`) {
		t.Fatalf("ADD config %s: want the free device npdev1 (npdev0 is the kubelet's)", sent)
	}
	var rec *struct{ id string }
	for _, e := range f.records("uid-p") {
		if e.Interface == "net1" && e.Device != nil && e.Device.ID == "npdev1" && e.Device.Pool == hotPool {
			rec = &struct{ id string }{e.Device.ID}
		}
	}
	if rec == nil {
		t.Fatalf("records %+v: net1 does not name its device", f.records("uid-p"))
	}
	if h := health(st); h["npdev1"] {
		t.Fatalf("pool %v: a hot-plugged device must be Unhealthy to the kubelet", h)
	}
	if ev := f.events(); !hasEvent(ev, "Normal", ReasonPlugged, "with device npdev1 of pool "+hotPool) {
		t.Fatalf("events %v", ev)
	}
	// The element goes: DEL with the config of the ADD, and the device is back in the pool.
	f.annotate("ns", "p", "br@net2")
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); calls[len(calls)-1] != "DEL ns/p net1 hd" || !strings.Contains(f.delegate.lastSent(), `"device":"npdev1"`) {
		t.Fatalf("calls %v, last config %s", calls, f.delegate.lastSent())
	}
	if h := health(st); !h["npdev1"] || st.Reserved() != 0 {
		t.Fatalf("pool %v, reserved %d: npdev1 is not back", h, st.Reserved())
	}
	if ev := f.events(); !hasEvent(ev, "Normal", ReasonDeviceReturned, "npdev1") {
		t.Fatalf("events %v", ev)
	}
}

// An exhausted pool is a Warning and no call; the element is retried when a device frees up,
// not on a backoff (sync returns no error), and then plugged.
func TestSyncPoolExhaustedWaitsForAFreeDevice(t *testing.T) {
	t.Parallel()
	src, _ := pool(t, 1, nil)
	f := hotplugFixture(t, src, runningPod("ns", "a", "hd@net1"), runningPod("ns", "b", "hd@net1"))
	src.SetOnFree(f.ctrl.PoolFreed)
	f.mustSync("ns", "a")
	if err := f.sync("ns", "b"); err != nil {
		t.Fatalf("sync b: %v; an exhausted pool must not back off", err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD ns/a net1 hd"}) {
		t.Fatalf("calls %v", calls)
	}
	if ev := f.events(); !hasEvent(ev, "Warning", ReasonPoolExhausted, "pool "+hotPool+" has no free device") {
		t.Fatalf("events %v", ev)
	}
	if n := f.ctrl.plugs.Len(); n != 0 {
		t.Fatalf("%d keys queued before any device freed", n)
	}
	f.annotate("ns", "a", "")
	f.mustSync("ns", "a")
	if n := f.ctrl.plugs.Len(); n != 1 {
		t.Fatalf("%d keys queued once npdev0 freed, want b", n)
	}
	k, _ := f.ctrl.plugs.Get()
	f.ctrl.plugs.Done(k)
	f.mustSync(k.Namespace, k.Name)
	if calls := f.delegate.callLog(); calls[len(calls)-1] != "ADD ns/b net1 hd" {
		t.Fatalf("calls %v", calls)
	}
}

// After a restart the pool knows from the checkpoints which devices are out: none is handed
// out twice. A replug keeps its device; a terminating pod gives it back first.
func TestSyncHotplugSurvivesARestart(t *testing.T) {
	t.Parallel()
	src, _ := pool(t, 2, nil)
	f := hotplugFixture(t, src, runningPod("ns", "a", "hd@net1"), runningPod("ns", "b", ""))
	f.mustSync("ns", "a")
	// Restart: a fresh pool (nothing reserved in memory), rebuilt from the records.
	src2, st2 := pool(t, 2, nil)
	f.open(func(o *Options) { o.Devices = src2 })
	f.ctrl.restoreDevices(f.ctx)
	if st2.Reserved() != 1 || health(st2)["npdev0"] {
		t.Fatalf("reserved %d, pool %v: npdev0 is in pod a", st2.Reserved(), health(st2))
	}
	f.annotate("ns", "b", "hd@net1")
	f.mustSync("ns", "b")
	if !strings.Contains(f.delegate.lastSent(), `"device":"npdev1"`) {
		t.Fatalf("b got %s, want npdev1", f.delegate.lastSent())
	}
	// A replug of a's element (new attributes) keeps npdev0.
	f.annotate("ns", "a", `[{"name":"hd","interface":"net1","mac":"02:00:00:00:00:09"}]`)
	f.mustSync("ns", "a")
	if calls := f.delegate.callLog(); !slices.Equal(calls[len(calls)-2:], []string{"DEL ns/a net1 hd", "ADD ns/a net1 hd"}) ||
		!strings.Contains(f.delegate.lastSent(), `"device":"npdev0"`) {
		t.Fatalf("calls %v, last config %s", calls, f.delegate.lastSent())
	}
	// a terminates: its device goes back to the host and the pool.
	f.update("ns", "a", func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: f.now} })
	_ = f.sync("ns", "a")
	if calls := f.delegate.callLog(); calls[len(calls)-1] != "DEL ns/a net1 hd" || st2.Reserved() != 1 {
		t.Fatalf("calls %v, reserved %d", calls, st2.Reserved())
	}
}

// An element whose device cannot be picked is a Warning and no call: a NAD tied to a resource
// that is not one of netplug's pools (an SR-IOV pool of another device plugin) cannot get a
// device into a running pod; a config the device cannot be written into waits for an edit of
// the NAD, and gives the device back; a failed reservation is retried.
func TestSyncHotplugCannotPickADevice(t *testing.T) {
	t.Parallel()
	conflist := hostDeviceNAD("ns", "hd", hotPool)
	conflist.Spec.Config = `{"cniVersion":"0.4.0","name":"hd","plugins":["host-device"]}`
	for _, tc := range []struct {
		name    string
		nad     *nadv1.NetworkAttachmentDefinition
		devs    func(t *testing.T) (Devices, func() int)
		retried bool
		event   []string
	}{
		{name: "resource of another plugin", nad: hostDeviceNAD("ns", "hd", "intel.com/sriov"), devs: realPool,
			event: []string{"Warning", ReasonDeviceUnavailable, "intel.com/sriov", "not a netplug device pool"}},
		{name: "config list with a plugin that is not an object", nad: conflist, devs: realPool,
			event: []string{"Warning", ReasonInvalidNetwork, "ns/hd as net1", "plugin 0"}},
		{name: "reservation fails", nad: hostDeviceNAD("ns", "hd", hotPool), retried: true,
			devs: func(*testing.T) (Devices, func() int) {
				return &fakeDevices{pool: true, reserveErr: errors.New("pool state unreadable")}, func() int { return 0 }
			},
			event: []string{"Warning", ReasonDeviceLookup, "ns/hd as net1", "pool state unreadable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			devs, reserved := tc.devs(t)
			f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "hd@net1")}, []*nadv1.NetworkAttachmentDefinition{tc.nad},
				func(o *Options) { o.Devices = devs })
			if err := f.sync("ns", "p"); (err != nil) != tc.retried {
				t.Fatalf("err %v, want a retry: %v", err, tc.retried)
			}
			f.expectEvent(tc.event...)
			f.expectCalls()
			if n := reserved(); n != 0 {
				t.Fatalf("%d devices reserved, want none", n)
			}
			if r := f.records("uid-p"); len(r) != 0 {
				t.Fatalf("records %+v", r)
			}
		})
	}
}

// realPool is a pool of one device, and how many of its devices are reserved.
func realPool(t *testing.T) (Devices, func() int) {
	src, st := pool(t, 1, nil)
	return src, st.Reserved
}

// After a restart, the devices of the records that can be read are restored; a pod whose
// records cannot be listed is skipped, and without a list of pods nothing is.
func TestRestoreDevicesSkipsUnreadableRecords(t *testing.T) {
	t.Parallel()
	src, _ := pool(t, 2, nil)
	f := hotplugFixture(t, src, runningPod("ns", "a", "hd@net1"), runningPod("ns", "b", "hd@net1"))
	f.mustSync("ns", "a")
	f.mustSync("ns", "b")
	for _, tc := range []struct {
		name   string
		broken brokenCheckpoints
		want   int
	}{
		{"one pod's records unreadable", brokenCheckpoints{listErr: errors.New("permission denied"), of: "uid-a"}, 1},
		{"no list of pods", brokenCheckpoints{podsErr: errors.New("permission denied")}, 0},
	} {
		restarted, st := pool(t, 2, nil)
		f.open(func(o *Options) { o.Devices = restarted })
		tc.broken.Checkpoints = f.store
		f.ctrl.checkpoints = tc.broken
		f.ctrl.restoreDevices(f.ctx)
		if n := st.Reserved(); n != tc.want {
			t.Fatalf("%s: %d devices restored, want %d", tc.name, n, tc.want)
		}
	}
}

// A claim's pool device is the DRA driver's to give back (when the kubelet unprepares the
// claim): releasing the record with the terminating pod returns the NIC to the host but keeps
// it out of the pool, so hot-plug cannot take it in between.
func TestSyncLeavesAClaimsDeviceReserved(t *testing.T) {
	t.Parallel()
	src, st := pool(t, 1, nil)
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "")}, nil, func(o *Options) { o.Devices = src })
	st.Restore("npdev0", "claim ns/c")
	sb := sandboxFor("uid-p")
	rec := checkpoint.Entry{PodNamespace: "ns", PodName: "p", PodUID: "uid-p", SandboxID: sb.ID, NetNS: sb.NetNS,
		Namespace: "ns", Network: "c", Interface: "npdev0", Config: []byte(`{"name":"netplug-veth","type":"host-device","device":"npdev0"}`),
		Origin: checkpoint.OriginClaim, Device: &checkpoint.Device{Pool: hotPool, ID: "npdev0", Interface: "npdev0"}}
	if err := f.store.Save(rec); err != nil {
		t.Fatal(err)
	}
	// The pod also holds a hot-plug (so netplug's finalizer) and terminates.
	f.update("ns", "p", func(p *corev1.Pod) {
		p.Finalizers, p.DeletionTimestamp = []string{podwriter.Finalizer}, &metav1.Time{Time: f.now}
	})
	_ = f.sync("ns", "p")
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"DEL ns/p npdev0 netplug-veth"}) {
		t.Fatalf("calls %v", calls)
	}
	if st.Reserved() != 1 {
		t.Fatal("the controller gave a claim's device back to the pool")
	}
}
