// Package multus is a client of the Multus thick daemon's /delegate endpoint, the daemon's API for
// adding and removing one network of a running pod, served over a unix socket.
//
// It does not use the daemon's own api.DoCNI helper, which has no deadline and builds a new
// transport for every call: this client keeps one transport (connections are reused) and bounds
// every call with a timeout.
package multus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	cnitypes "github.com/containernetworking/cni/pkg/types"
	cni100 "github.com/containernetworking/cni/pkg/types/100"
	"gopkg.in/k8snetworkplumbingwg/multus-cni.v4/pkg/server/api"
	"k8s.io/klog/v2"
)

// Request is one network of one pod, as the daemon needs it for ADD and DEL.
type Request struct {
	SandboxID, NetNS, IfName      string // CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME
	PodNamespace, PodName, PodUID string
	Config                        []byte   // the NAD's CNI config JSON, sent as is
	IPs                           []string // requested IPs (ADD only)
	MAC                           string   // requested MAC (ADD only)
	CNIArgs                       map[string]interface{}
}

// DaemonError is the daemon's answer to a request it refused. Its text is the daemon's own
// message, so callers add their context when they wrap it.
type DaemonError struct {
	StatusCode int    // HTTP status
	CNICode    uint   // CNI error code when the daemon answered with a CNI error, else 0
	Message    string // msg (and details) of a CNI error, or the trimmed body
}

func (e *DaemonError) Error() string { return e.Message }

// The daemon's refusals that callers act on. The daemon answers with text only, so this package
// is the one place that reads it; callers test with errors.Is.
var (
	// ErrInterfaceExists: the ADD was refused before any plugin ran, because the pod already
	// has a link of that name. Nothing was created.
	ErrInterfaceExists = errors.New("the pod already has an interface of that name")
	// ErrPodNotFound: the daemon could not find the pod object (its DEL needs it).
	ErrPodNotFound = errors.New("the Multus daemon cannot find the pod object")
	// ErrDaemonUnavailable: the daemon's socket is missing or refuses connections.
	ErrDaemonUnavailable = errors.New("the Multus daemon is not reachable")
	// ErrDeviceGone: a DEL found no link of that name in the pod to move back out. host-device
	// says so instead of succeeding (CNI wants DEL to succeed when its work is already undone);
	// it has released its IPAM allocation by then.
	ErrDeviceGone = errors.New("the interface to move out of the pod is not there")
)

// Is maps the daemon's words onto the errors above. Multus v4 says "validateIfName: interface
// name net1 already exists" (checked before any plugin runs), "pod not found during Multus
// GetPod", and "expected pod UID X but got Y from Kube API" (the pod was replaced).
func (e *DaemonError) Is(target error) bool {
	switch target {
	case ErrInterfaceExists:
		return strings.Contains(e.Message, "validateIfName: interface name") && strings.Contains(e.Message, "already exists")
	case ErrPodNotFound:
		// Also a pod of the same name made since: Multus finds it, and refuses its UID.
		return strings.Contains(e.Message, "pod not found during Multus GetPod") ||
			(strings.Contains(e.Message, "expected pod UID") && strings.Contains(e.Message, "from Kube API"))
	case ErrDeviceGone:
		// host-device's moveLinkOut: failed to find "net1": Link not found
		return strings.Contains(e.Message, `"host-device"`) && strings.Contains(e.Message, "failed to find") &&
			strings.Contains(e.Message, "Link not found")
	}
	return false
}

// unavailableError wraps a failure to reach the daemon at all.
type unavailableError struct{ err error }

func (e unavailableError) Error() string        { return e.err.Error() }
func (e unavailableError) Unwrap() error        { return e.err }
func (e unavailableError) Is(target error) bool { return target == ErrDaemonUnavailable }

// maxBody bounds what is read from the daemon; a CNI result or error is far smaller.
const maxBody = 1 << 20

// Client talks to one Multus daemon socket.
type Client struct {
	socket  string
	timeout time.Duration
	http    *http.Client
}

// New returns a client for the daemon socket at socketPath. Nothing is dialled until a call.
func New(socketPath string, timeout time.Duration) *Client {
	dialer := &net.Dialer{}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socketPath)
		},
		// Every worker may hold a connection; keep them instead of redialling per call.
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &Client{socket: socketPath, timeout: timeout, http: &http.Client{Transport: transport}}
}

// Add runs a CNI ADD of r through the daemon and returns the CNI result.
func (c *Client) Add(ctx context.Context, r Request) (*cni100.Result, error) {
	body, err := c.delegate(ctx, "ADD", r)
	if err != nil {
		return nil, err
	}
	var resp api.Response
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &resp); err != nil {
			return nil, fmt.Errorf("multus ADD %s: decoding the daemon's result %q: %w", r.IfName, truncate(body), err)
		}
	}
	if resp.Result == nil {
		// The interface exists now; failing here would only make a retry trip over it.
		klog.FromContext(ctx).Info("Multus daemon answered ADD without a CNI result", "ifName", r.IfName)
		return &cni100.Result{}, nil
	}
	return resp.Result, nil
}

// Del runs a CNI DEL of r through the daemon.
func (c *Client) Del(ctx context.Context, r Request) error {
	_, err := c.delegate(ctx, "DEL", r)
	return err
}

// Check asks the daemon's /healthz whether it serves; it backs /readyz.
func (c *Client) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.GetAPIEndpoint(api.MultusHealthAPIEndpoint), nil)
	if err != nil {
		return fmt.Errorf("building multus health request: %w", err)
	}
	_, err = c.send(req)
	if err != nil {
		return fmt.Errorf("multus health on %s: %w", c.socket, err)
	}
	return nil
}

func (c *Client) delegate(ctx context.Context, command string, r Request) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("multus %s: %w", command, err)
	}
	payload, err := json.Marshal(r.apiRequest(command))
	if err != nil {
		return nil, fmt.Errorf("multus %s %s: encoding the request: %w", command, r.IfName, err)
	}

	logger := klog.FromContext(ctx).WithValues("command", command, "ifName", r.IfName, "sandbox", r.SandboxID)
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api.GetAPIEndpoint(api.MultusDelegateAPIEndpoint), bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("multus %s %s: building the request: %w", command, r.IfName, err)
	}
	req.Header.Set("Content-Type", "application/json")

	start := time.Now()
	body, err := c.send(req)
	logger.V(4).Info("Multus delegate call done", "duration", time.Since(start), "err", err)
	var daemonErr *DaemonError
	if errors.As(err, &daemonErr) {
		// The daemon's words are the error; the caller knows which pod and network it was.
		return nil, daemonErr
	}
	if err != nil {
		return nil, fmt.Errorf("multus %s %s via %s: %w", command, r.IfName, c.socket, err)
	}
	return body, nil
}

// send performs req and returns the body of a 200 answer, or a *DaemonError for any other status.
func (c *Client) send(req *http.Request) ([]byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error repeats the dummy URL; the dial or context error underneath says it all.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return nil, unavailableError{err}
		}
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("reading the daemon's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, daemonError(resp.StatusCode, body)
	}
	return body, nil
}

func daemonError(status int, body []byte) *DaemonError {
	text := strings.TrimSpace(string(body))
	var cniErr cnitypes.Error
	if json.Unmarshal(body, &cniErr) == nil && cniErr.Msg != "" {
		return &DaemonError{StatusCode: status, CNICode: cniErr.Code, Message: cniErr.Error()}
	}
	if text == "" {
		text = fmt.Sprintf("multus daemon answered HTTP %d with an empty body", status)
	}
	return &DaemonError{StatusCode: status, Message: text}
}

func (r Request) validate() error {
	for _, f := range []struct {
		name, value string
		inCNIArgs   bool
	}{
		{"sandbox ID", r.SandboxID, true},
		{"netns path", r.NetNS, false},
		{"interface name", r.IfName, false},
		{"pod namespace", r.PodNamespace, true},
		{"pod name", r.PodName, true},
		{"pod UID", r.PodUID, true},
	} {
		if f.value == "" {
			return fmt.Errorf("empty %s", f.name)
		}
		// The daemon splits CNI_ARGS on ';' and '='; such a value would corrupt it.
		if f.inCNIArgs && strings.ContainsAny(f.value, ";=") {
			return fmt.Errorf("%s %q contains ';' or '='", f.name, f.value)
		}
	}
	if len(bytes.TrimSpace(r.Config)) == 0 {
		return errors.New("empty CNI config")
	}
	return nil
}

// apiRequest builds the daemon's request. Attributes go with ADD only: the daemon ignores them on DEL.
func (r Request) apiRequest(command string) *api.Request {
	var attrs *api.DelegateInterfaceAttributes
	if command == "ADD" {
		attrs = &api.DelegateInterfaceAttributes{IPRequest: r.IPs, MacRequest: r.MAC}
		if len(r.CNIArgs) > 0 {
			args := r.CNIArgs
			attrs.CNIArgs = &args
		}
		// else CNIArgs stays nil: the field has no omitempty and is sent as null, which the
		// daemon reads as "no cni-args" (an empty object would still rewrite the config).
	}
	req := api.CreateDelegateRequest(command, r.SandboxID, r.NetNS, r.IfName, r.PodNamespace, r.PodName, r.PodUID, r.Config, attrs)
	req.Env["CNI_ARGS"] = fmt.Sprintf("IgnoreUnknown=true;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s",
		r.PodNamespace, r.PodName, r.SandboxID, r.PodUID)
	// The daemon reads the sandbox ID for the delegate's CNI_ARGS from this env key, not from CNI_ARGS.
	req.Env["K8S_POD_INFRA_CONTAINER_ID"] = r.SandboxID
	return req
}

func truncate(b []byte) string {
	const limit = 256
	if len(b) > limit {
		return string(b[:limit]) + "..."
	}
	return string(b)
}
