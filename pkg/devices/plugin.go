package devices

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// Plugin is the kubelet device plugin of one pool: a gRPC server on
// <Dir>/netplug-<pool>.sock, registered with the kubelet on <Dir>/kubelet.sock. The kubelet
// wipes Dir when it restarts: Run notices its socket gone (or kubelet.sock replaced) on the next
// tick and serves and registers again.
type Plugin struct {
	pluginapi.UnimplementedDevicePluginServer

	State *State
	// Dir is the kubelet's device-plugin directory (/var/lib/kubelet/device-plugins).
	Dir string
	// Tick paces the checks for a kubelet restart.
	Tick <-chan time.Time
	// Timeout bounds the registration call (default 10 s).
	Timeout time.Duration
	// CDI maps a device node's path to its qualified CDI device name (WriteCDISpec); nil
	// without a CDI spec.
	CDI map[string]string

	mu         sync.Mutex
	registered int // registrations so far, for tests and logs
}

// Endpoint is the plugin's socket name in Dir.
func (p *Plugin) Endpoint() string { return "netplug-" + p.State.Pool.Name() + ".sock" }

// Registrations counts the plugin's successful registrations with the kubelet.
func (p *Plugin) Registrations() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.registered
}

// Run serves and registers until ctx is done, and again whenever the kubelet restarts.
func (p *Plugin) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("pool", p.State.Pool.ResourceName)
	var srv *grpc.Server
	var kubelet fileID
	stop := func() {
		if srv != nil {
			srv.Stop()
			srv = nil
		}
	}
	defer stop()
	for {
		sock := filepath.Join(p.Dir, p.Endpoint())
		current := identify(filepath.Join(p.Dir, "kubelet.sock"))
		_, statErr := os.Stat(sock)
		if srv == nil || statErr != nil || current != kubelet {
			stop()
			var err error
			if srv, err = p.serve(ctx, sock); err != nil {
				logger.Error(err, "Serving the device plugin")
			} else if err := p.register(ctx); err != nil {
				logger.Error(err, "Registering with the kubelet; retrying")
				stop() // the next tick serves and registers again
			} else {
				kubelet = current
				logger.Info("Registered with the kubelet", "endpoint", p.Endpoint())
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.Tick:
		}
	}
}

// fileID tells a recreated file from the old one.
type fileID struct {
	ino   uint64
	mtime int64
}

func identify(path string) fileID {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}
	}
	id := fileID{mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino = st.Ino
	}
	return id
}

func (p *Plugin) serve(ctx context.Context, sock string) (*grpc.Server, error) {
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing the old socket: %w", err)
	}
	lis, err := (&net.ListenConfig{}).Listen(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", sock, err)
	}
	// Closing must never unlink the path: by then it may be the socket of the next server.
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	srv := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(srv, p)
	go func() { _ = srv.Serve(lis) }()
	return srv, nil
}

func (p *Plugin) register(ctx context.Context) error {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+filepath.Join(p.Dir, "kubelet.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close() //nolint:errcheck // one call
	opts, _ := p.GetDevicePluginOptions(ctx, nil)
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version: pluginapi.Version, Endpoint: p.Endpoint(), ResourceName: p.State.Pool.ResourceName, Options: opts,
	})
	if err != nil {
		return fmt.Errorf("registering %s: %w", p.State.Pool.ResourceName, err)
	}
	p.mu.Lock()
	p.registered++
	p.mu.Unlock()
	return nil
}

// GetDevicePluginOptions: no PreStartContainer; GetPreferredAllocation is served.
func (p *Plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{GetPreferredAllocationAvailable: true}, nil
}

// ListAndWatch sends the pool's devices with their health, and again on every change.
func (p *Plugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	for {
		devs, changed := p.State.Devices()
		resp := &pluginapi.ListAndWatchResponse{Devices: make([]*pluginapi.Device, 0, len(devs))}
		for _, d := range devs {
			health := pluginapi.Healthy
			if !d.Healthy {
				health = pluginapi.Unhealthy
			}
			dev := &pluginapi.Device{ID: d.ID, Health: health}
			if d.NUMA >= 0 {
				// For the kubelet's Topology Manager: the NIC is local to this NUMA node.
				dev.Topology = &pluginapi.TopologyInfo{Nodes: []*pluginapi.NUMANode{{ID: int64(d.NUMA)}}}
			}
			resp.Devices = append(resp.Devices, dev)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}

// GetPreferredAllocation prefers the devices that must be included, then the others of one
// NUMA node (that of the devices that must be included, else the node with the most available
// devices), then the rest, each group in ID order (PCI addresses sort by bus, so NICs of one bus
// go together).
func (p *Plugin) GetPreferredAllocation(_ context.Context, req *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	resp := &pluginapi.PreferredAllocationResponse{}
	for _, c := range req.GetContainerRequests() {
		picked := slices.Clone(c.GetMustIncludeDeviceIDs())
		available := p.byLocality(picked, c.GetAvailableDeviceIDs())
		for _, id := range available {
			if len(picked) >= int(c.GetAllocationSize()) {
				break
			}
			if !slices.Contains(picked, id) {
				picked = append(picked, id)
			}
		}
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerPreferredAllocationResponse{DeviceIDs: picked})
	}
	return resp, nil
}

// byLocality orders ids by ID, those on the preferred NUMA node first: the node of the first
// device that must be included, else the node with the most of ids (the lowest on a tie).
func (p *Plugin) byLocality(must, ids []string) []string {
	numa := func(id string) int {
		if d, ok := p.State.Lookup(id); ok {
			return d.NUMA
		}
		return -1
	}
	preferred := -1
	for _, id := range must {
		if preferred = numa(id); preferred >= 0 {
			break
		}
	}
	if preferred < 0 {
		count := map[int]int{}
		for _, id := range ids {
			if n := numa(id); n >= 0 {
				count[n]++
				if preferred < 0 || count[n] > count[preferred] || (count[n] == count[preferred] && n < preferred) {
					preferred = n
				}
			}
		}
	}
	out := slices.Sorted(slices.Values(ids))
	if preferred >= 0 {
		slices.SortStableFunc(out, func(a, b string) int {
			return boolRank(numa(b) == preferred) - boolRank(numa(a) == preferred)
		})
	}
	return out
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Allocate answers for each container: a device node pool mounts its nodes (DeviceSpec, "rw",
// and the CDI device of the node when a spec was written);
// a NIC needs nothing from the runtime (netplug, or Multus in flow a, moves it in once the
// sandbox runs). An unknown device ID is an error.
func (p *Plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.GetContainerRequests() {
		cr := &pluginapi.ContainerAllocateResponse{}
		seen := map[string]bool{}
		if err := p.State.allocatedByKubelet(c.GetDevicesIds()); err != nil {
			return nil, err
		}
		for _, id := range c.GetDevicesIds() {
			d, ok := p.State.Lookup(id)
			if !ok {
				return nil, fmt.Errorf("pool %s has no device %q", p.State.Pool.ResourceName, id)
			}
			if d.Path != "" && !seen[d.Path] {
				seen[d.Path] = true
				cr.Devices = append(cr.Devices, &pluginapi.DeviceSpec{ContainerPath: d.Path, HostPath: d.Path, Permissions: "rw"})
				if name, ok := p.CDI[d.Path]; ok {
					cr.CdiDevices = append(cr.CdiDevices, &pluginapi.CDIDevice{Name: name})
				}
			}
		}
		resp.ContainerResponses = append(resp.ContainerResponses, cr)
	}
	return resp, nil
}

// PreStartContainer is not required (GetDevicePluginOptions); it does nothing.
func (p *Plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}
