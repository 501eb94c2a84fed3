// Package cri resolves a pod to its READY sandbox and that sandbox's network namespace, over the
// CRI gRPC API (runtime.v1). It works with containerd and CRI-O alike: both put the OCI runtime
// spec of the sandbox in the verbose PodSandboxStatus info, and the spec names the netns path.
package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// PodUIDLabel is the label kubelet sets on every sandbox it creates.
const PodUIDLabel = "io.kubernetes.pod.uid"

// maxMessageSize matches kubelet's CRI client: verbose status carries a whole OCI spec.
const maxMessageSize = 16 << 20

// Sandbox is a pod's running sandbox.
type Sandbox struct {
	ID    string // sandbox (pod infra container) ID, CNI_CONTAINERID
	NetNS string // path of the sandbox's network namespace, CNI_NETNS
	// Annotations are the pod's annotations as kubelet passed them when it created the sandbox
	// (the runtime keeps them unaltered, per CRI): what the pod asked for at its creation, known
	// even to a netplug that was not running then.
	Annotations map[string]string
}

var (
	// ErrNoReadySandbox means the pod has no READY sandbox yet (or any more); callers requeue.
	ErrNoReadySandbox = errors.New("no ready pod sandbox")
	// ErrHostNetwork means the sandbox uses the node's network namespace: nothing can be plugged.
	ErrHostNetwork = errors.New("pod sandbox uses the host network namespace")
)

// Client is a CRI RuntimeService client whose every call is bounded by a timeout.
type Client struct {
	conn    *grpc.ClientConn
	runtime runtimeapi.RuntimeServiceClient
	socket  string
	timeout time.Duration

	// netns caches each READY sandbox's network namespace by sandbox ID: a sandbox keeps its
	// netns for life, so once ListPodSandbox names the same sandbox again the verbose status
	// call (a whole OCI spec) is skipped. CRI is asked again only when the sandbox changes.
	mu    sync.Mutex
	netns map[string]string
}

// maxCachedSandboxes bounds the netns cache; past it the cache starts over (a node runs at most
// a few hundred pods).
const maxCachedSandboxes = 1024

// New prepares a client for the CRI socket at socketPath. It does not connect: the first call
// does, so a runtime that starts after netplug is picked up without a restart.
func New(socketPath string, timeout time.Duration) (*Client, error) {
	if !filepath.IsAbs(socketPath) {
		return nil, fmt.Errorf("CRI socket path %q is not absolute", socketPath)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("CRI timeout must be positive, got %s", timeout)
	}
	conn, err := grpc.NewClient("unix://"+socketPath,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize)),
	)
	if err != nil {
		return nil, fmt.Errorf("creating CRI client for %s: %w", socketPath, err)
	}
	return &Client{
		conn:    conn,
		runtime: runtimeapi.NewRuntimeServiceClient(conn),
		socket:  socketPath,
		timeout: timeout,
	}, nil
}

// Close releases the connection.
func (c *Client) Close() error {
	return c.conn.Close()
}

// Check asks the runtime for its version; it backs /readyz.
func (c *Client) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := c.runtime.Version(ctx, &runtimeapi.VersionRequest{Version: "v1"}); err != nil {
		return fmt.Errorf("CRI Version on %s: %w", c.socket, err)
	}
	return nil
}

// PodSandbox returns the pod's READY sandbox and its netns path. A pod with no READY sandbox gives
// ErrNoReadySandbox; a hostNetwork pod gives ErrHostNetwork (both wrapped).
func (c *Client) PodSandbox(ctx context.Context, podUID string) (Sandbox, error) {
	if podUID == "" {
		return Sandbox{}, errors.New("CRI sandbox lookup: empty pod UID")
	}
	logger := klog.FromContext(ctx).WithValues("podUID", podUID)

	ready, err := c.readySandbox(ctx, podUID)
	if err != nil {
		return Sandbox{}, err
	}
	id := ready.GetId()
	logger = logger.WithValues("sandbox", id)
	if netns, ok := c.cachedNetNS(id); ok {
		return Sandbox{ID: id, NetNS: netns, Annotations: ready.GetAnnotations()}, nil
	}

	netns, err := c.sandboxNetNS(ctx, id)
	if errors.Is(err, errNoSpec) {
		// Older CRI-O returns "{}" as the info of a sandbox without an infra container;
		// its containers' verbose status still carries the spec with the same netns.
		logger.V(4).Info("Sandbox status has no runtime spec, reading it from a running container")
		netns, err = c.containerNetNS(ctx, id)
	}
	if err != nil {
		return Sandbox{}, fmt.Errorf("pod %s sandbox %s: %w", podUID, id, err)
	}
	logger.V(5).Info("Resolved pod sandbox", "netns", netns)
	c.cacheNetNS(id, netns)
	return Sandbox{ID: id, NetNS: netns, Annotations: ready.GetAnnotations()}, nil
}

func (c *Client) cachedNetNS(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	netns, ok := c.netns[id]
	return netns, ok
}

func (c *Client) cacheNetNS(id, netns string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.netns == nil || len(c.netns) >= maxCachedSandboxes {
		c.netns = map[string]string{}
	}
	c.netns[id] = netns
}

// readySandbox lists the pod's READY sandboxes and picks the newest: a pod whose sandbox was
// recreated briefly has two, and the old one is about to go.
func (c *Client) readySandbox(ctx context.Context, podUID string) (*runtimeapi.PodSandbox, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{
			State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
			LabelSelector: map[string]string{PodUIDLabel: podUID},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("CRI ListPodSandbox for pod %s: %w", podUID, err)
	}
	var newest *runtimeapi.PodSandbox
	for _, sb := range resp.GetItems() {
		// The filter already asks for this; checking again costs nothing and guards a runtime
		// that ignores part of the filter.
		if sb.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY || sb.GetLabels()[PodUIDLabel] != podUID {
			continue
		}
		if newest == nil || sb.GetCreatedAt() > newest.GetCreatedAt() {
			newest = sb
		}
	}
	if newest == nil {
		return nil, fmt.Errorf("pod %s: %w", podUID, ErrNoReadySandbox)
	}
	return newest, nil
}

// errNoSpec marks verbose info without a runtime spec, so another source can be tried.
var errNoSpec = errors.New("verbose info has no runtimeSpec")

func (c *Client) sandboxNetNS(ctx context.Context, sandboxID string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sandboxID, Verbose: true})
	if err != nil {
		return "", fmt.Errorf("CRI PodSandboxStatus: %w", err)
	}
	status := resp.GetStatus()
	if status.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		// It stopped between the list and the status call.
		return "", ErrNoReadySandbox
	}
	if status.GetLinux().GetNamespaces().GetOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE {
		return "", ErrHostNetwork
	}
	return netNSFromInfo(resp.GetInfo())
}

func (c *Client) containerNetNS(ctx context.Context, sandboxID string) (string, error) {
	listCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	list, err := c.runtime.ListContainers(listCtx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{
			PodSandboxId: sandboxID,
			State:        &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		},
	})
	if err != nil {
		return "", fmt.Errorf("CRI ListContainers: %w", err)
	}
	if len(list.GetContainers()) == 0 {
		return "", fmt.Errorf("sandbox status has no runtime spec and no container is running: %w", ErrNoReadySandbox)
	}
	id := list.GetContainers()[0].GetId()

	statusCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.runtime.ContainerStatus(statusCtx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		return "", fmt.Errorf("CRI ContainerStatus %s: %w", id, err)
	}
	netns, err := netNSFromInfo(resp.GetInfo())
	if err != nil {
		return "", fmt.Errorf("container %s: %w", id, err)
	}
	return netns, nil
}

// verboseInfo is the part of info["info"] netplug reads. containerd and CRI-O both marshal the
// sandbox's (or container's) OCI spec under "runtimeSpec".
type verboseInfo struct {
	RuntimeSpec *struct {
		Linux *struct {
			Namespaces []struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"runtimeSpec"`
}

func netNSFromInfo(info map[string]string) (string, error) {
	raw, ok := info["info"]
	if !ok || raw == "" {
		return "", errNoSpec
	}
	var vi verboseInfo
	if err := json.Unmarshal([]byte(raw), &vi); err != nil {
		return "", fmt.Errorf("malformed verbose info: %w", err)
	}
	if vi.RuntimeSpec == nil {
		return "", errNoSpec
	}
	if vi.RuntimeSpec.Linux != nil {
		for _, ns := range vi.RuntimeSpec.Linux.Namespaces {
			if ns.Type != "network" {
				continue
			}
			if ns.Path == "" {
				// A network namespace entry without a path is one the runtime creates itself
				// and does not name; nothing outside can join it.
				return "", errors.New("network namespace has no path in the runtime spec")
			}
			return ns.Path, nil
		}
	}
	// No network namespace in the spec: the sandbox shares the host's.
	return "", ErrHostNetwork
}
