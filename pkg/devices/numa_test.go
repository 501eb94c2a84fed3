package devices

import (
	"context"
	"slices"
	"testing"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// NICs of one NUMA node go together: the node of a device that must be included, else the
// node with the most available devices; ListAndWatch tells the kubelet each NIC's node.
func TestPreferredAllocationKeepsToOneNUMANode(t *testing.T) {
	st := NewState(Pool{ResourceName: "netplug.io/nic", PCIAddresses: []string{"a"}})
	st.Update([]Device{
		{ID: "0000:00:01.0", Interface: "ens1", Healthy: true, NUMA: 1},
		{ID: "0000:00:02.0", Interface: "ens2", Healthy: true, NUMA: 0},
		{ID: "0000:00:03.0", Interface: "ens3", Healthy: true, NUMA: 1},
		{ID: "0000:00:04.0", Interface: "ens4", Healthy: true, NUMA: 0},
		{ID: "0000:00:05.0", Interface: "ens5", Healthy: true, NUMA: 1},
		{ID: "virt", Interface: "virt", Healthy: true, NUMA: -1},
	})
	p := &Plugin{State: st}
	all := []string{"virt", "0000:00:05.0", "0000:00:04.0", "0000:00:03.0", "0000:00:02.0", "0000:00:01.0"}
	for _, tc := range []struct {
		name string
		must []string
		size int32
		want []string
	}{
		{"the node with the most devices", nil, 2, []string{"0000:00:01.0", "0000:00:03.0"}},
		{"the node of a device that must be included", []string{"0000:00:04.0"}, 2, []string{"0000:00:04.0", "0000:00:02.0"}},
		{"then the others", []string{"0000:00:02.0"}, 4, []string{"0000:00:02.0", "0000:00:04.0", "0000:00:01.0", "0000:00:03.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := p.GetPreferredAllocation(context.Background(), &pluginapi.PreferredAllocationRequest{
				ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{{AvailableDeviceIDs: all, MustIncludeDeviceIDs: tc.must, AllocationSize: tc.size}}})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.ContainerResponses[0].DeviceIDs; !slices.Equal(got, tc.want) {
				t.Fatalf("preferred %v, want %v", got, tc.want)
			}
		})
	}
	if got := p.byLocality(nil, []string{"virt", "b"}); !slices.Equal(got, []string{"b", "virt"}) {
		t.Fatalf("without NUMA: %v, want ID order", got)
	}
}

type listStream struct {
	pluginapi.DevicePlugin_ListAndWatchServer
	ctx  context.Context
	sent []*pluginapi.ListAndWatchResponse
	stop context.CancelFunc
}

func (s *listStream) Context() context.Context { return s.ctx }
func (s *listStream) Send(r *pluginapi.ListAndWatchResponse) error {
	s.sent = append(s.sent, r)
	s.stop()
	return nil
}

func TestListAndWatchReportsTopology(t *testing.T) {
	st := NewState(Pool{ResourceName: "netplug.io/nic", PCIAddresses: []string{"a"}})
	st.Update([]Device{{ID: "0000:00:01.0", Interface: "ens1", Healthy: true, NUMA: 1}, {ID: "virt", Interface: "virt", Healthy: true, NUMA: -1}})
	ctx, cancel := context.WithCancel(context.Background())
	s := &listStream{ctx: ctx, stop: cancel}
	if err := (&Plugin{State: st}).ListAndWatch(&pluginapi.Empty{}, s); err != nil {
		t.Fatal(err)
	}
	devs := s.sent[0].Devices
	if len(devs) != 2 || devs[0].Topology == nil || devs[0].Topology.Nodes[0].ID != 1 || devs[1].Topology != nil {
		t.Fatalf("devices %+v", devs)
	}
}

// A scan reads only the links a prefix pool could match (a node's links are mostly its pods'
// veths), every link when a pool matches by driver or PCI address, and asks PodResources for the
// kubelet's allocations only when it found a NIC.
func TestScanReadsOnlyWhatThePoolsNeed(t *testing.T) {
	prefix := namesOfInterest([]Pool{{ResourceName: "netplug.io/veth", InterfacePrefix: "npdev"}, {ResourceName: "netplug.io/tun", CharDevices: []string{"/dev/net/tun"}}})
	if prefix == nil || !prefix("npdev3") || prefix("veth1234") || prefix("eth0") {
		t.Fatal("a prefix pool reads links it cannot match")
	}
	if namesOfInterest([]Pool{{ResourceName: "netplug.io/v", Driver: "virtio_net"}}) != nil {
		t.Fatal("a driver pool must read every link")
	}
	if charOnly := namesOfInterest([]Pool{{ResourceName: "netplug.io/tun", CharDevices: []string{"/dev/net/tun"}}}); charOnly == nil || charOnly("eth0") {
		t.Fatal("without NIC pools no link is read")
	}
	if anyNIC(map[string][]Device{"netplug.io/tun": {{ID: "dev-net-tun", Path: "/dev/net/tun"}}}) || !anyNIC(map[string][]Device{"x": {{ID: "a", Interface: "a"}}}) {
		t.Fatal("anyNIC")
	}
}
