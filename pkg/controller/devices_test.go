package controller

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/devices"
)

// fakeDevices is a pool whose kubelet allocated one NIC (npdev0, or iface) to pods that request
// it; its lookups fail with the errors set.
type fakeDevices struct {
	mu    sync.Mutex
	inPod map[string]bool
	// iface is the NIC's host name ("" for npdev0).
	iface string
	// nicsErr fails PodNICs; hostErrs are the problems it reports with the NICs.
	nicsErr  error
	hostErrs []error
	// pool makes every resource a NIC pool; reserveErr is what Reserve answers (default: exhausted).
	pool       bool
	reserveErr error
}

func (d *fakeDevices) Requests(pod *corev1.Pod) bool { return pod.Labels["nic"] == "yes" }

func (d *fakeDevices) PodNICs(_ context.Context, pod *corev1.Pod) ([]devices.NIC, []error, error) {
	if d.nicsErr != nil {
		return nil, nil, d.nicsErr
	}
	iface := cmp.Or(d.iface, "npdev0")
	pool := devices.Pool{ResourceName: "netplug.io/veth", InterfacePrefix: "npdev"}
	return []devices.NIC{{Pool: pool, Device: devices.Device{ID: iface, Interface: iface},
		Config: []byte(`{"cniVersion":"0.4.0","name":"netplug-veth","type":"host-device","device":"` + iface + `"}`)}}, d.hostErrs, nil
}

func (d *fakeDevices) MarkInPod(_, iface string, in bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inPod == nil {
		d.inPod = map[string]bool{}
	}
	d.inPod[iface] = in
}

func (d *fakeDevices) NICPool(string) bool { return d.pool }
func (d *fakeDevices) Reserve(context.Context, string, string) (devices.Reservation, error) {
	return devices.Reservation{}, cmp.Or(d.reserveErr, devices.ErrPoolExhausted)
}
func (d *fakeDevices) Restore(string, string, string) {}
func (d *fakeDevices) Unreserve(string, string)       {}

func nicPod() *corev1.Pod {
	pod := runningPod("ns", "p", "")
	pod.Labels = map[string]string{"nic": "yes"}
	return pod
}

// A NIC the kubelet allocated is moved in at start through the executor, recorded as a device,
// survives every edit of the annotation, and goes back to the host first when the pod ends.
func TestSyncMovesAllocatedNICsIn(t *testing.T) {
	t.Parallel()
	devs := &fakeDevices{}
	f := newFixture(t, []*corev1.Pod{nicPod()}, nads("ns/a"), func(o *Options) { o.Devices = devs })
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD ns/p npdev0 netplug-veth"}) {
		t.Fatalf("calls %v", calls)
	}
	r := f.records("uid-p")
	if len(r) != 1 || r[0].Origin != checkpoint.OriginDevice || !devs.inPod["npdev0"] {
		t.Fatalf("records %+v, in pod %v", r, devs.inPod)
	}
	if ev := f.events(); !hasEvent(ev, "Normal", ReasonDeviceMovedIn, "npdev0") {
		t.Fatalf("events %v", ev)
	}
	// The annotation path never unplugs it, and a name clash with it is refused.
	f.annotate("ns", "p", "a")
	f.mustSync("ns", "p")
	f.annotate("ns", "p", `[{"name":"a","interface":"npdev0"}]`)
	f.mustSync("ns", "p")
	f.annotate("ns", "p", "")
	f.mustSync("ns", "p")
	for _, c := range f.delegate.callLog() {
		if strings.HasPrefix(c, "DEL ns/p npdev0") || strings.Contains(c, "ADD ns/p npdev0 a") {
			t.Fatalf("the annotation path touched the NIC: %v", f.delegate.callLog())
		}
	}
	// The pod terminates: the NIC goes back while the sandbox still exists.
	f.update("ns", "p", func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: f.now} })
	_ = f.sync("ns", "p")
	if calls := f.delegate.callLog(); calls[len(calls)-1] != "DEL ns/p npdev0 netplug-veth" || devs.inPod["npdev0"] {
		t.Fatalf("calls %v, in pod %v", calls, devs.inPod)
	}
}

// What PodResources cannot say is reported on the pod: no answer at all is retried and moves
// nothing; a NIC without its host addresses still moves; a NIC whose name cannot be an
// interface name is left out.
func TestSyncDeviceLookupProblems(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		devs    *fakeDevices
		retried bool
		event   []string
		calls   []string
	}{
		{name: "PodResources does not answer", devs: &fakeDevices{nicsErr: errors.New("podresources: connection refused")}, retried: true,
			event: []string{"Warning", ReasonDeviceLookup, "asking the kubelet which NICs", "connection refused"}},
		{name: "host addresses unreadable", devs: &fakeDevices{hostErrs: []error{errors.New("addresses of npdev0: permission denied")}},
			event: []string{"Warning", ReasonDeviceLookup, "permission denied", "moves without its host addresses"},
			calls: []string{"ADD ns/p npdev0 netplug-veth"}},
		{name: "NIC name not an interface name", devs: &fakeDevices{iface: "np/dev0"},
			event: []string{"Warning", ReasonInvalidInterface, "NIC np/dev0 of netplug.io/veth"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, []*corev1.Pod{nicPod()}, nil, func(o *Options) { o.Devices = tc.devs })
			if err := f.sync("ns", "p"); (err != nil) != tc.retried {
				t.Fatalf("err %v, want a retry: %v", err, tc.retried)
			}
			f.expectEvent(tc.event...)
			f.expectCalls(tc.calls...)
		})
	}
}
