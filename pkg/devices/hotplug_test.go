package devices

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

func vethState(names ...string) *State {
	st := NewState(Pool{ResourceName: "netplug.io/veth", InterfacePrefix: "npdev"})
	var found []Device
	for _, n := range names {
		found = append(found, Device{ID: n, Interface: n, Healthy: true})
	}
	st.Update(found)
	return st
}

// Reserve takes only a device nobody holds: not the kubelet's (PodResources, or an Allocate
// just answered), not one moved in at start, not unhealthy, not reserved already.
func TestReserve(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	st := vethState("npdev0", "npdev1", "npdev2", "npdev3", "npdev4")
	st.clock = func() time.Time { return now }
	st.MarkInPod("npdev1", true)
	st.Update([]Device{{ID: "npdev0", Interface: "npdev0", Healthy: true}, {ID: "npdev1", Interface: "npdev1", Healthy: true},
		{ID: "npdev2", Interface: "npdev2", Healthy: false}, {ID: "npdev3", Interface: "npdev3", Healthy: true},
		{ID: "npdev4", Interface: "npdev4", Healthy: true}})
	if err := st.allocatedByKubelet([]string{"npdev3"}); err != nil {
		t.Fatal(err)
	}
	d, err := st.Reserve("ns/p:net1", map[string]bool{"npdev0": true})
	if err != nil || d.ID != "npdev4" {
		t.Fatalf("Reserve = %+v, %v; want npdev4", d, err)
	}
	if _, err := st.Reserve("ns/q:net1", map[string]bool{"npdev0": true}); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("second Reserve: %v, want exhausted", err)
	}
	// An Allocate answered long ago no longer holds npdev3 (PodResources says who has it now).
	now = now.Add(allocateGrace + time.Second)
	if d, err := st.Reserve("ns/q:net1", nil); err != nil || d.ID != "npdev0" {
		t.Fatalf("Reserve = %+v, %v; want npdev0 (free once PodResources no longer lists it)", d, err)
	}
	if !st.Unreserve("npdev4") || st.Unreserve("npdev4") {
		t.Fatal("Unreserve reports wrongly")
	}
	st.Restore("npdev4", "ns/p:net1")
	if st.Reserved() != 2 {
		t.Fatalf("reserved %d", st.Reserved())
	}
	if c := st.counts(map[string]bool{}); c != (poolCounts{free: 1, held: 1, unhealthy: 1, hotplugged: 2}) {
		t.Fatalf("counts %+v", c)
	}
}

// While a device is hot-plugged the kubelet sees it Unhealthy (so it never allocates it), and
// an Allocate of it anyway (a race) is refused.
func TestPluginHidesReservedDevices(t *testing.T) {
	st := vethState("npdev0")
	p := &Plugin{State: st}
	if _, err := st.Reserve("ns/p:net1", nil); err != nil {
		t.Fatal(err)
	}
	devs, _ := st.Devices()
	if len(devs) != 1 || devs[0].Healthy {
		t.Fatalf("devices %+v: a reserved device must be Unhealthy", devs)
	}
	_, err := p.Allocate(context.Background(), &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"npdev0"}}}})
	if err == nil {
		t.Fatal("Allocate of a hot-plugged device succeeded")
	}
	st.Unreserve("npdev0")
	if _, err := p.Allocate(context.Background(), &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"npdev0"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Reserve("ns/p:net1", nil); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("Reserve right after the kubelet's Allocate: %v", err)
	}
}

type fakeHost map[string]HostState

func (h fakeHost) State(name string) (HostState, error) { return h[name], nil }
func (h fakeHost) Restore(string, HostState) error      { return nil }

type allocs map[string]map[string]bool

func (a allocs) Allocated(context.Context) (map[string]map[string]bool, error) { return a, nil }

type brokenAllocs struct{}

func (brokenAllocs) Allocated(context.Context) (map[string]map[string]bool, error) {
	return nil, errors.New("kubelet down")
}

func TestSourceReserve(t *testing.T) {
	st := vethState("npdev0", "npdev1")
	host := fakeHost{"npdev1": {Addresses: []netip.Prefix{netip.MustParsePrefix("10.1.0.2/24")}, MTU: 1400}}
	freed := 0
	src := &Source{States: map[string]*State{"netplug.io/veth": st}, Allocations: allocs{"netplug.io/veth": {"npdev0": true}}, Host: host}
	src.SetOnFree(func(string) { freed++ })
	r, err := src.Reserve(context.Background(), "netplug.io/veth", "ns/p:net1")
	if err != nil || r.Device.ID != "npdev1" || r.Host.MTU != 1400 || len(r.Host.Addresses) != 1 {
		t.Fatalf("Reserve = %+v, %v", r, err)
	}
	if _, err := src.Reserve(context.Background(), "netplug.io/other", "x"); err == nil {
		t.Fatal("a resource that is no pool")
	}
	src.Unreserve("netplug.io/veth", "npdev1")
	src.Unreserve("netplug.io/veth", "npdev1")
	if freed != 1 {
		t.Fatalf("OnFree told %d times, want 1", freed)
	}
	// Without PodResources nothing is picked: it could be the kubelet's.
	src.Allocations = brokenAllocs{}
	if _, err := src.Reserve(context.Background(), "netplug.io/veth", "ns/p:net1"); err == nil {
		t.Fatal("picked a device without knowing the kubelet's allocations")
	}
}

func TestInjectDevice(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		dev          Device
		want         []map[string]any // of the config, or of each plugin of a list
	}{
		{"veth by name", `{"type":"host-device","device":"other"}`, Device{ID: "npdev1", Interface: "npdev1"},
			[]map[string]any{{"type": "host-device", "device": "npdev1"}}},
		{"PCI NIC", `{"type":"host-device"}`, Device{ID: "0000:00:04.0", Interface: "ens4", PCI: "0000:00:04.0"},
			[]map[string]any{{"type": "host-device", "device": "ens4", "deviceID": "0000:00:04.0", "pciBusID": "0000:00:04.0"}}},
		{"config list", `{"plugins":[{"type":"host-device"},{"type":"tuning"}]}`, Device{ID: "npdev1", Interface: "npdev1"},
			[]map[string]any{{"type": "host-device", "device": "npdev1"}, {"type": "tuning", "device": "npdev1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := InjectDevice([]byte(tc.config), tc.dev)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			var plugins []map[string]any
			if list, ok := got["plugins"].([]any); ok {
				for _, p := range list {
					plugins = append(plugins, p.(map[string]any))
				}
			} else {
				plugins = []map[string]any{got}
			}
			if len(plugins) != len(tc.want) {
				t.Fatalf("got %s", out)
			}
			for i, w := range tc.want {
				for k, v := range w {
					if plugins[i][k] != v {
						t.Fatalf("plugin %d: %s = %v, want %v (%s)", i, k, plugins[i][k], v, out)
					}
				}
			}
		})
	}
	for _, bad := range []string{`[1]`, `{"plugins":[1]}`} {
		if _, err := InjectDevice([]byte(bad), Device{Interface: "x"}); err == nil {
			t.Errorf("InjectDevice(%s): no error", bad)
		}
	}
}
