package devices

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// A character-device pool has a CDI spec with one device per node, and Allocate names the CDI
// device next to the DeviceSpec.
func TestCDISpec(t *testing.T) {
	dir := t.TempDir()
	pool := Pool{ResourceName: "netplug.io/tun", CharDevices: []string{"/dev/net/tun", "/dev/vhost-net"}, Shares: 2}
	names, err := WriteCDISpec(dir, pool)
	if err != nil {
		t.Fatal(err)
	}
	if names["/dev/net/tun"] != "netplug.io/tun=dev-net-tun" || names["/dev/vhost-net"] != "netplug.io/tun=dev-vhost-net" {
		t.Fatalf("names %v", names)
	}
	data, err := os.ReadFile(filepath.Join(dir, "netplug.io-tun.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec cdiSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Kind != "netplug.io/tun" || spec.Version != cdiVersion || len(spec.Devices) != 2 ||
		spec.Devices[0].Name != "dev-net-tun" || spec.Devices[0].Edits.DeviceNodes[0].Path != "/dev/net/tun" {
		t.Fatalf("spec %s", data)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".netplug-cdi-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	st := NewState(pool)
	st.Update([]Device{{ID: "dev-net-tun-0", Path: "/dev/net/tun", Healthy: true}, {ID: "dev-net-tun-1", Path: "/dev/net/tun", Healthy: true}})
	p := &Plugin{State: st, CDI: names}
	resp, err := p.Allocate(context.Background(), &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"dev-net-tun-0", "dev-net-tun-1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	c := resp.ContainerResponses[0]
	if len(c.Devices) != 1 || len(c.CdiDevices) != 1 || c.CdiDevices[0].Name != "netplug.io/tun=dev-net-tun" {
		t.Fatalf("allocate %+v", c)
	}
	if _, err := WriteCDISpec(filepath.Join(dir, "missing"), pool); err == nil {
		t.Fatal("a missing directory is no error")
	}
}
