package cri

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeRuntime is a RuntimeService that behaves like a runtime for the calls netplug makes.
type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer

	sandboxes []*runtimeapi.PodSandbox
	// info is each sandbox's verbose info["info"]; absent means no "info" key.
	info map[string]string
	// hostNetwork marks sandboxes whose status reports NamespaceMode NODE.
	hostNetwork map[string]bool
	containers  []*runtimeapi.Container
	// containerInfo is each container's verbose info["info"].
	containerInfo map[string]string
	// ignoreFilter returns every sandbox, as a sloppy runtime might.
	ignoreFilter bool
	// delay holds every call back this long (or until the caller gives up).
	delay time.Duration
	// statusCalls counts PodSandboxStatus calls.
	statusCalls atomic.Int32
}

func (f *fakeRuntime) wait(ctx context.Context) error {
	if f.delay == 0 {
		return nil
	}
	select {
	case <-time.After(f.delay):
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func (f *fakeRuntime) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "fake", RuntimeVersion: "1", RuntimeApiVersion: "v1"}, nil
}

func (f *fakeRuntime) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	var items []*runtimeapi.PodSandbox
	for _, sb := range f.sandboxes {
		if !f.ignoreFilter {
			filter := req.GetFilter()
			if filter.GetState() != nil && filter.GetState().GetState() != sb.GetState() {
				continue
			}
			matches := true
			for k, v := range filter.GetLabelSelector() {
				if sb.GetLabels()[k] != v {
					matches = false
				}
			}
			if !matches {
				continue
			}
		}
		items = append(items, sb)
	}
	return &runtimeapi.ListPodSandboxResponse{Items: items}, nil
}

func (f *fakeRuntime) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	f.statusCalls.Add(1)
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	for _, sb := range f.sandboxes {
		if sb.GetId() != req.GetPodSandboxId() {
			continue
		}
		mode := runtimeapi.NamespaceMode_POD
		if f.hostNetwork[sb.GetId()] {
			mode = runtimeapi.NamespaceMode_NODE
		}
		resp := &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{
			Id:        sb.GetId(),
			State:     sb.GetState(),
			CreatedAt: sb.GetCreatedAt(),
			Labels:    sb.GetLabels(),
			Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
				Options: &runtimeapi.NamespaceOption{Network: mode},
			}},
		}}
		if info, ok := f.info[sb.GetId()]; ok && req.GetVerbose() {
			resp.Info = map[string]string{"info": info}
		}
		return resp, nil
	}
	return nil, status.Errorf(codes.NotFound, "sandbox %q not found", req.GetPodSandboxId())
}

func (f *fakeRuntime) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	var out []*runtimeapi.Container
	for _, c := range f.containers {
		filter := req.GetFilter()
		if filter.GetPodSandboxId() != "" && filter.GetPodSandboxId() != c.GetPodSandboxId() {
			continue
		}
		if filter.GetState() != nil && filter.GetState().GetState() != c.GetState() {
			continue
		}
		out = append(out, c)
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

func (f *fakeRuntime) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	info, ok := f.containerInfo[req.GetContainerId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q not found", req.GetContainerId())
	}
	return &runtimeapi.ContainerStatusResponse{
		Status: &runtimeapi.ContainerStatus{Id: req.GetContainerId(), State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		Info:   map[string]string{"info": info},
	}, nil
}

// shortSocketPath returns a socket path under a fresh directory short enough for sun_path
// (t.TempDir embeds the test name and can exceed 108 bytes).
func shortSocketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cri")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "cri.sock")
}

// serve runs fake on a real gRPC server on a unix socket and returns a Client for it.
func serve(t *testing.T, fake *fakeRuntime, timeout time.Duration) *Client {
	t.Helper()
	socket := shortSocketPath(t)
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	c, err := New(socket, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

const podUID = "8f1c2f3e-0000-4000-8000-000000000001"

func sandbox(id string, state runtimeapi.PodSandboxState, created int64, uid string) *runtimeapi.PodSandbox {
	return &runtimeapi.PodSandbox{
		Id:        id,
		State:     state,
		CreatedAt: created,
		Labels:    map[string]string{PodUIDLabel: uid},
		Metadata:  &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: uid},
	}
}

// containerdInfo is shaped like containerd 1.6/1.7's sandbox verbose info.
func containerdInfo(netns string) string {
	return `{"pid":4242,"processStatus":"running","netNamespaceClosed":false,"image":"registry.k8s.io/pause:3.9",
	"sandboxID":"x","runtimeHandler":"","runtimeType":"io.containerd.runc.v2",
	"config":{"metadata":{"name":"p","uid":"u","namespace":"ns"}},
	"runtimeSpec":{"ociVersion":"1.0.2-dev","process":{"args":["/pause"]},"root":{"path":"rootfs","readonly":true},
	"linux":{"resources":{"cpu":{"shares":2}},"cgroupsPath":"/kubepods/besteffort/podu/x",
	"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"network","path":"` + netns + `"}]}}}`
}

// crioInfo is shaped like CRI-O's createSandboxInfo: image, pid, runtimeSpec with pinned namespaces.
func crioInfo(netns string) string {
	return `{"image":"registry.k8s.io/pause:3.9","pid":777,
	"runtimeSpec":{"ociVersion":"1.0.2-dev","linux":{"namespaces":[
	{"type":"pid"},{"type":"network","path":"` + netns + `"},
	{"type":"ipc","path":"/var/run/ipcns/0c1e"},{"type":"uts","path":"/var/run/utsns/0c1e"},{"type":"mount"}]}}}`
}

func TestPodSandbox(t *testing.T) {
	other := "11111111-0000-4000-8000-000000000002"
	tests := []struct {
		name      string
		fake      *fakeRuntime
		want      Sandbox
		wantErr   error  // errors.Is target
		errSubstr string // text the error must contain
	}{
		{
			name: "ready sandbox on containerd",
			fake: &fakeRuntime{
				sandboxes: []*runtimeapi.PodSandbox{sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID)},
				info:      map[string]string{"sb1": containerdInfo("/var/run/netns/cni-1234")},
			},
			want: Sandbox{ID: "sb1", NetNS: "/var/run/netns/cni-1234"},
		},
		{
			name: "ready sandbox on CRI-O",
			fake: &fakeRuntime{
				sandboxes: []*runtimeapi.PodSandbox{sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID)},
				info:      map[string]string{"sb1": crioInfo("/var/run/netns/7b8c0d2a")},
			},
			want: Sandbox{ID: "sb1", NetNS: "/var/run/netns/7b8c0d2a"},
		},
		{
			name: "newer NOTREADY sandbox and other pods ignored, even by a runtime that ignores the filter",
			fake: &fakeRuntime{
				ignoreFilter: true,
				sandboxes: []*runtimeapi.PodSandbox{
					sandbox("old-ready", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID),
					sandbox("stale", runtimeapi.PodSandboxState_SANDBOX_NOTREADY, 30, podUID),
					sandbox("other-pod", runtimeapi.PodSandboxState_SANDBOX_READY, 40, other),
				},
				info: map[string]string{
					"old-ready": containerdInfo("/var/run/netns/cni-ready"),
					"stale":     containerdInfo("/var/run/netns/cni-stale"),
					"other-pod": containerdInfo("/var/run/netns/cni-other"),
				},
			},
			want: Sandbox{ID: "old-ready", NetNS: "/var/run/netns/cni-ready"},
		},
		{
			name: "several READY: newest wins",
			fake: &fakeRuntime{
				sandboxes: []*runtimeapi.PodSandbox{
					sandbox("a", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID),
					sandbox("c", runtimeapi.PodSandboxState_SANDBOX_READY, 30, podUID),
					sandbox("b", runtimeapi.PodSandboxState_SANDBOX_READY, 20, podUID),
				},
				info: map[string]string{
					"a": containerdInfo("/var/run/netns/a"),
					"b": containerdInfo("/var/run/netns/b"),
					"c": containerdInfo("/var/run/netns/c"),
				},
			},
			want: Sandbox{ID: "c", NetNS: "/var/run/netns/c"},
		},
		{
			name:    "no sandbox at all",
			fake:    &fakeRuntime{},
			wantErr: ErrNoReadySandbox,
		},
		{
			name: "only a NOTREADY sandbox",
			fake: &fakeRuntime{
				sandboxes: []*runtimeapi.PodSandbox{sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_NOTREADY, 10, podUID)},
				info:      map[string]string{"sb1": containerdInfo("/var/run/netns/x")},
			},
			wantErr: ErrNoReadySandbox,
		},
		{
			name: "malformed verbose info",
			fake: &fakeRuntime{
				sandboxes: []*runtimeapi.PodSandbox{sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID)},
				info:      map[string]string{"sb1": `{"runtimeSpec": {"linux": `},
			},
			errSubstr: "malformed verbose info",
		},
		{
			name: "wrong type in verbose info",
			fake: &fakeRuntime{
				sandboxes: []*runtimeapi.PodSandbox{sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID)},
				info:      map[string]string{"sb1": `{"runtimeSpec": {"linux": {"namespaces": "network"}}}`},
			},
			errSubstr: "malformed verbose info",
		},
		{
			name: "hostNetwork by namespace mode",
			fake: &fakeRuntime{
				sandboxes:   []*runtimeapi.PodSandbox{sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID)},
				info:        map[string]string{"sb1": containerdInfo("/var/run/netns/x")},
				hostNetwork: map[string]bool{"sb1": true},
			},
			wantErr: ErrHostNetwork,
		},
		{
			name: "hostNetwork by spec without a network namespace",
			fake: &fakeRuntime{
				sandboxes: []*runtimeapi.PodSandbox{sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID)},
				info:      map[string]string{"sb1": `{"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}}`},
			},
			wantErr: ErrHostNetwork,
		},
		{
			name: "network namespace without a path",
			fake: &fakeRuntime{
				sandboxes: []*runtimeapi.PodSandbox{sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID)},
				info:      map[string]string{"sb1": `{"runtimeSpec":{"linux":{"namespaces":[{"type":"network"}]}}}`},
			},
			errSubstr: "no path",
		},
		{
			name: "CRI-O without infra container: spec read from a running container",
			fake: &fakeRuntime{
				sandboxes: []*runtimeapi.PodSandbox{sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID)},
				info:      map[string]string{"sb1": `{}`},
				containers: []*runtimeapi.Container{
					{Id: "exited", PodSandboxId: "sb1", State: runtimeapi.ContainerState_CONTAINER_EXITED},
					{Id: "other", PodSandboxId: "sb2", State: runtimeapi.ContainerState_CONTAINER_RUNNING},
					{Id: "app", PodSandboxId: "sb1", State: runtimeapi.ContainerState_CONTAINER_RUNNING},
				},
				containerInfo: map[string]string{
					"app":   `{"sandboxID":"sb1","pid":99,"privileged":false,"runtimeSpec":{"linux":{"namespaces":[{"type":"network","path":"/var/run/netns/crio-app"}]}}}`,
					"other": `{"runtimeSpec":{"linux":{"namespaces":[{"type":"network","path":"/var/run/netns/wrong"}]}}}`,
				},
			},
			want: Sandbox{ID: "sb1", NetNS: "/var/run/netns/crio-app"},
		},
		{
			name: "no spec anywhere",
			fake: &fakeRuntime{
				sandboxes: []*runtimeapi.PodSandbox{sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID)},
			},
			wantErr: ErrNoReadySandbox,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serve(t, tt.fake, 2*time.Second)
			got, err := c.PodSandbox(context.Background(), podUID)
			switch {
			case tt.wantErr != nil || tt.errSubstr != "":
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("error %q is not %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errSubstr) {
					t.Errorf("error %q does not contain %q", err, tt.errSubstr)
				}
			case err != nil:
				t.Fatalf("PodSandbox: %v", err)
			case !reflect.DeepEqual(got, tt.want):
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	fake := &fakeRuntime{
		sandboxes: []*runtimeapi.PodSandbox{sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID)},
		info:      map[string]string{"sb1": containerdInfo("/var/run/netns/x")},
		delay:     5 * time.Second,
	}
	c := serve(t, fake, 200*time.Millisecond)

	for name, call := range map[string]func() error{
		"PodSandbox": func() error { _, err := c.PodSandbox(context.Background(), podUID); return err },
		"Check":      func() error { return c.Check(context.Background()) },
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := call()
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("error %v, want DeadlineExceeded", err)
			}
			if elapsed := time.Since(start); elapsed > 3*time.Second {
				t.Errorf("call took %s despite a 200ms timeout", elapsed)
			}
		})
	}
}

func TestCallerContextCancels(t *testing.T) {
	fake := &fakeRuntime{delay: 5 * time.Second}
	c := serve(t, fake, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.PodSandbox(ctx, podUID); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("error %v, want DeadlineExceeded from the caller's context", err)
	}
}

func TestCheck(t *testing.T) {
	c := serve(t, &fakeRuntime{}, time.Second)
	if err := c.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}

	missing := filepath.Join(filepath.Dir(shortSocketPath(t)), "absent.sock")
	down, err := New(missing, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = down.Close() }()
	err = down.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Check against a missing socket: %v, want an error naming %s", err, missing)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New("run/containerd.sock", time.Second); err == nil {
		t.Error("relative socket path accepted")
	}
	if _, err := New("/run/containerd.sock", 0); err == nil {
		t.Error("zero timeout accepted")
	}
	c, err := New("/run/containerd.sock", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PodSandbox(context.Background(), ""); err == nil {
		t.Error("empty pod UID accepted")
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
}

// A sandbox keeps its netns for life: the verbose status (a whole OCI spec) is read once per
// sandbox, and again only for a new sandbox of the pod.
func TestPodSandboxCachesTheNetNSPerSandbox(t *testing.T) {
	fake := &fakeRuntime{
		sandboxes: []*runtimeapi.PodSandbox{sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID)},
		info:      map[string]string{"sb1": containerdInfo("/var/run/netns/cni-1"), "sb2": containerdInfo("/var/run/netns/cni-2")},
	}
	c := serve(t, fake, 5*time.Second)
	for range 3 {
		if sb, err := c.PodSandbox(context.Background(), podUID); err != nil || sb.NetNS != "/var/run/netns/cni-1" {
			t.Fatalf("PodSandbox = %+v, %v", sb, err)
		}
	}
	if n := fake.statusCalls.Load(); n != 1 {
		t.Fatalf("%d status calls for one sandbox, want 1", n)
	}
	fake.sandboxes = []*runtimeapi.PodSandbox{sandbox("sb2", runtimeapi.PodSandboxState_SANDBOX_READY, 20, podUID)}
	if sb, err := c.PodSandbox(context.Background(), podUID); err != nil || sb.ID != "sb2" || sb.NetNS != "/var/run/netns/cni-2" {
		t.Fatalf("PodSandbox after a new sandbox = %+v, %v", sb, err)
	}
	if n := fake.statusCalls.Load(); n != 2 {
		t.Fatalf("%d status calls, want 2", n)
	}
}

// The sandbox's annotations (what kubelet created it with) come with it, from the list call,
// whether its netns was cached or not.
func TestPodSandboxCarriesItsAnnotations(t *testing.T) {
	ready := sandbox("sb1", runtimeapi.PodSandboxState_SANDBOX_READY, 10, podUID)
	ready.Annotations = map[string]string{"k8s.v1.cni.cncf.io/networks": "a,b@net2"}
	fake := &fakeRuntime{
		sandboxes: []*runtimeapi.PodSandbox{ready},
		info:      map[string]string{"sb1": containerdInfo("/var/run/netns/cni-1")},
	}
	c := serve(t, fake, 5*time.Second)
	for i := range 2 { // the second call is served from the netns cache
		sb, err := c.PodSandbox(context.Background(), podUID)
		if err != nil || sb.Annotations["k8s.v1.cni.cncf.io/networks"] != "a,b@net2" {
			t.Fatalf("call %d: PodSandbox = %+v, %v", i, sb, err)
		}
	}
}
