package devices

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// fakeKubelet is the kubelet's registration server on <dir>/kubelet.sock.
type fakeKubelet struct {
	pluginapi.UnimplementedRegistrationServer
	mu   sync.Mutex
	reqs []*pluginapi.RegisterRequest
	got  chan *pluginapi.RegisterRequest
	srv  *grpc.Server
}

func startKubelet(t *testing.T, dir string) *fakeKubelet {
	t.Helper()
	lis, err := net.Listen("unix", filepath.Join(dir, "kubelet.sock"))
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKubelet{got: make(chan *pluginapi.RegisterRequest, 10), srv: grpc.NewServer()}
	pluginapi.RegisterRegistrationServer(k.srv, k)
	go func() { _ = k.srv.Serve(lis) }()
	t.Cleanup(k.srv.Stop)
	return k
}

func (k *fakeKubelet) Register(_ context.Context, r *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	k.mu.Lock()
	k.reqs = append(k.reqs, r)
	k.mu.Unlock()
	k.got <- r
	return &pluginapi.Empty{}, nil
}

func (k *fakeKubelet) wait(t *testing.T) *pluginapi.RegisterRequest {
	t.Helper()
	select {
	case r := <-k.got:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no registration")
		return nil
	}
}

func dial(t *testing.T, sock string) pluginapi.DevicePluginClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pluginapi.NewDevicePluginClient(conn)
}

// shortDir is a temporary directory with a path short enough for unix sockets.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "np")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func TestPluginRegistersServesAndReregisters(t *testing.T) {
	dir := shortDir(t)
	kubelet := startKubelet(t, dir)
	pools, _ := ParsePools([]byte(`[{"resourceName":"netplug.io/veth","interfacePrefix":"npdev"}]`))
	state := NewState(pools[0])
	state.Update([]Device{{ID: "npdev1", Interface: "npdev1", Healthy: true}, {ID: "npdev2", Interface: "npdev2", Healthy: true}})
	tick := make(chan time.Time)
	p := &Plugin{State: state, Dir: dir, Tick: tick}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()

	r := kubelet.wait(t)
	if r.ResourceName != "netplug.io/veth" || r.Endpoint != "netplug-veth.sock" || r.Version != pluginapi.Version || !r.Options.GetPreferredAllocationAvailable {
		t.Fatalf("registration = %+v", r)
	}
	client := dial(t, filepath.Join(dir, p.Endpoint()))
	stream, err := client.ListAndWatch(ctx, &pluginapi.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	health := func() map[string]string {
		t.Helper()
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, d := range resp.Devices {
			out[d.ID] = d.Health
		}
		return out
	}
	if h := health(); h["npdev1"] != pluginapi.Healthy || h["npdev2"] != pluginapi.Healthy {
		t.Fatalf("first list = %v", h)
	}
	state.Update([]Device{{ID: "npdev1", Interface: "npdev1", Healthy: true}}) // npdev2 is gone
	if h := health(); h["npdev2"] != pluginapi.Unhealthy || h["npdev1"] != pluginapi.Healthy {
		t.Fatalf("after removal = %v", h)
	}
	state.Update([]Device{{ID: "npdev1", Interface: "npdev1", Healthy: true}, {ID: "npdev2", Interface: "npdev2", Healthy: true}})
	if h := health(); h["npdev2"] != pluginapi.Healthy {
		t.Fatalf("back = %v", h)
	}

	// NICs need nothing from the runtime; an unknown ID is refused.
	resp, err := client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"npdev1"}}}})
	if err != nil || len(resp.ContainerResponses) != 1 || len(resp.ContainerResponses[0].Devices) != 0 {
		t.Fatalf("Allocate = %+v, %v", resp, err)
	}
	if _, err := client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"nope"}}}}); err == nil || !strings.Contains(err.Error(), "no device") {
		t.Fatalf("Allocate(unknown) = %v", err)
	}
	pref, err := client.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: []string{"npdev3", "npdev1", "npdev2"}, MustIncludeDeviceIDs: []string{"npdev3"}, AllocationSize: 2},
	}})
	if err != nil || strings.Join(pref.ContainerResponses[0].DeviceIDs, ",") != "npdev3,npdev1" {
		t.Fatalf("GetPreferredAllocation = %+v, %v", pref, err)
	}
	if _, err := client.PreStartContainer(ctx, &pluginapi.PreStartContainerRequest{}); err != nil {
		t.Fatal(err)
	}

	// The kubelet restarts: it wipes the directory and makes a new kubelet.sock.
	kubelet.srv.Stop()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.Remove(filepath.Join(dir, e.Name()))
	}
	kubelet = startKubelet(t, dir)
	tick <- time.Now()
	if r := kubelet.wait(t); r.ResourceName != "netplug.io/veth" {
		t.Fatalf("re-registration = %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, p.Endpoint())); err != nil {
		t.Fatalf("socket not served again: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); p.Registrations() != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("registrations = %d, want 2", p.Registrations())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPluginCharDevices(t *testing.T) {
	pools, _ := ParsePools([]byte(`[{"resourceName":"netplug.io/tun","charDevices":["/dev/net/tun","/dev/vhost-net"],"shares":2}]`))
	state := NewState(pools[0])
	devs, _ := Match(pools, nil, nil, func(string) bool { return true })
	state.Update(devs["netplug.io/tun"])
	p := &Plugin{State: state}
	resp, err := p.Allocate(context.Background(), &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{
		{DevicesIds: []string{"dev-net-tun-0", "dev-net-tun-1", "dev-vhost-net-0"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	specs := resp.ContainerResponses[0].Devices
	if len(specs) != 2 || specs[0].HostPath != "/dev/net/tun" || specs[0].ContainerPath != "/dev/net/tun" || specs[0].Permissions != "rw" || specs[1].HostPath != "/dev/vhost-net" {
		t.Fatalf("DeviceSpecs = %+v", specs)
	}
}

func TestPluginRegistrationFails(t *testing.T) {
	dir := shortDir(t)
	pools, _ := ParsePools([]byte(`[{"resourceName":"netplug.io/veth","interfacePrefix":"npdev"}]`))
	tick := make(chan time.Time)
	p := &Plugin{State: NewState(pools[0]), Dir: dir, Tick: tick, Timeout: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	tick <- time.Now() // no kubelet yet: the registration failed, and is retried
	kubelet := startKubelet(t, dir)
	tick <- time.Now()
	kubelet.wait(t)
	cancel()
	<-done
	// A directory that cannot hold a socket.
	p = &Plugin{State: NewState(pools[0]), Dir: filepath.Join(dir, "missing"), Tick: tick}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
}
