package multus

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/k8snetworkplumbingwg/multus-cni.v4/pkg/server/api"
)

// daemon is a stand-in for the Multus thick daemon on a unix socket.
type daemon struct {
	socket string
	conns  atomic.Int32 // connections accepted

	mu       sync.Mutex
	requests []recorded
}

type recorded struct {
	method, path string
	body         []byte
}

func (d *daemon) last(t *testing.T) recorded {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.requests) == 0 {
		t.Fatal("the daemon received no request")
	}
	return d.requests[len(d.requests)-1]
}

func (d *daemon) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.requests)
}

// shortSocketPath returns a socket path short enough for sun_path (t.TempDir embeds test names).
func shortSocketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "multus")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "multus.sock")
}

// startDaemon serves handler on a fresh unix socket, recording every request first.
func startDaemon(t *testing.T, handler http.HandlerFunc) *daemon {
	t.Helper()
	d := &daemon{socket: shortSocketPath(t)}
	lis, err := net.Listen("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d.mu.Lock()
		d.requests = append(d.requests, recorded{method: r.Method, path: r.URL.Path, body: body})
		d.mu.Unlock()
		handler(w, r)
	}))
	srv.Listener = lis
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			d.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return d
}

const bridgeConf = `{"cniVersion":"1.0.0","name":"br","type":"bridge","bridge":"br1","ipam":{"type":"host-local","subnet":"10.10.0.0/24"}}`

func request() Request {
	return Request{
		SandboxID:    "0123abcd",
		NetNS:        "/var/run/netns/cni-1",
		IfName:       "net1",
		PodNamespace: "team-a",
		PodName:      "web-0",
		PodUID:       "8f1c2f3e-0000-4000-8000-000000000001",
		Config:       []byte(bridgeConf),
	}
}

const addResult = `{"Result":{"cniVersion":"1.0.0","interfaces":[{"name":"net1","mac":"0a:58:0a:0a:00:05","sandbox":"/var/run/netns/cni-1"}],
"ips":[{"interface":0,"address":"10.10.0.5/24","gateway":"10.10.0.1"}]}}`

func TestAdd(t *testing.T) {
	d := startDaemon(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, addResult)
	})
	c := New(d.socket, 5*time.Second)

	res, err := c.Add(context.Background(), request())
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.10.0.5/24" {
		t.Errorf("IPs = %v, want 10.10.0.5/24", res.IPs)
	}
	if len(res.Interfaces) != 1 || res.Interfaces[0].Mac != "0a:58:0a:0a:00:05" {
		t.Errorf("Interfaces = %v", res.Interfaces)
	}
	got := d.last(t)
	if got.method != http.MethodPost || got.path != api.MultusDelegateAPIEndpoint {
		t.Errorf("request %s %s, want POST %s", got.method, got.path, api.MultusDelegateAPIEndpoint)
	}
}

func TestRequestBody(t *testing.T) {
	d := startDaemon(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, addResult) })
	c := New(d.socket, 5*time.Second)

	withAttrs := request()
	withAttrs.IPs = []string{"10.10.0.9/24"}
	withAttrs.MAC = "02:00:00:00:00:09"
	withAttrs.CNIArgs = map[string]interface{}{"vlan": float64(7)}

	tests := []struct {
		name string
		call func() error
		// wantAttrs is the interfaceAttributes JSON, or "" for none at all
		wantAttrs string
		command   string
	}{
		{
			name:      "ADD without attributes sends cni-args null",
			call:      func() error { _, err := c.Add(context.Background(), request()); return err },
			wantAttrs: `{"cni-args":null}`,
			command:   "ADD",
		},
		{
			name:      "ADD with attributes",
			call:      func() error { _, err := c.Add(context.Background(), withAttrs); return err },
			wantAttrs: `{"ips":["10.10.0.9/24"],"mac":"02:00:00:00:00:09","cni-args":{"vlan":7}}`,
			command:   "ADD",
		},
		{
			name:    "DEL sends no attributes",
			call:    func() error { return c.Del(context.Background(), withAttrs) },
			command: "DEL",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err != nil {
				t.Fatal(err)
			}
			var body map[string]json.RawMessage
			if err := json.Unmarshal(d.last(t).body, &body); err != nil {
				t.Fatalf("request body is not JSON: %v", err)
			}

			// config travels base64-encoded ([]byte in JSON) and byte-for-byte as given.
			var configB64 string
			if err := json.Unmarshal(body["config"], &configB64); err != nil {
				t.Fatalf("config is not a JSON string: %s", body["config"])
			}
			config, err := base64.StdEncoding.DecodeString(configB64)
			if err != nil || string(config) != bridgeConf {
				t.Errorf("config decodes to %q (%v), want the NAD config as is", config, err)
			}

			var env map[string]string
			if err := json.Unmarshal(body["env"], &env); err != nil {
				t.Fatal(err)
			}
			wantEnv := map[string]string{
				"CNI_COMMAND":                tt.command,
				"CNI_CONTAINERID":            "0123abcd",
				"CNI_NETNS":                  "/var/run/netns/cni-1",
				"CNI_IFNAME":                 "net1",
				"CNI_ARGS":                   "IgnoreUnknown=true;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=0123abcd;K8S_POD_UID=8f1c2f3e-0000-4000-8000-000000000001",
				"K8S_POD_INFRA_CONTAINER_ID": "0123abcd",
			}
			for k, want := range wantEnv {
				if env[k] != want {
					t.Errorf("env[%s] = %q, want %q", k, env[k], want)
				}
			}
			// The daemon rejects any CNI_ARGS element that is not exactly key=value.
			for _, kv := range strings.Split(env["CNI_ARGS"], ";") {
				if len(strings.Split(kv, "=")) != 2 {
					t.Errorf("CNI_ARGS element %q is not key=value", kv)
				}
			}

			attrs, present := body["interfaceAttributes"]
			switch {
			case tt.wantAttrs == "" && present:
				t.Errorf("interfaceAttributes = %s, want none", attrs)
			case tt.wantAttrs != "" && string(attrs) != tt.wantAttrs:
				t.Errorf("interfaceAttributes = %s, want %s", attrs, tt.wantAttrs)
			}
		})
	}
}

func TestDaemonErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		wantText string
		wantCode uint
		wantIs   error
	}{
		{
			name:     "plain text body, as http.Error writes it",
			status:   http.StatusBadRequest,
			body:     "error configuring pod [team-a/web-0] networking: interface net1 already exists\n",
			wantText: "error configuring pod [team-a/web-0] networking: interface net1 already exists",
		},
		{
			name:     "CNI error JSON",
			status:   http.StatusBadRequest,
			body:     `{"cniVersion":"1.0.0","code":7,"msg":"invalid network config","details":"bridge name missing"}`,
			wantText: "invalid network config; bridge name missing",
			wantCode: 7,
		},
		{
			name:     "empty body",
			status:   http.StatusInternalServerError,
			body:     "",
			wantText: "multus daemon answered HTTP 500 with an empty body",
		},
		{
			name:     "name taken: Multus v4 refuses before any plugin runs",
			status:   http.StatusInternalServerError,
			body:     "[ns/p:sec-bridge]: error adding container to network \"sec-bridge\": DelegateAdd: cannot set \"bridge\" interface name to \"eth0\": validateIfName: interface name eth0 already exists\n",
			wantText: "[ns/p:sec-bridge]: error adding container to network \"sec-bridge\": DelegateAdd: cannot set \"bridge\" interface name to \"eth0\": validateIfName: interface name eth0 already exists",
			wantIs:   ErrInterfaceExists,
		},
		{
			name:     "pod object gone",
			status:   http.StatusInternalServerError,
			body:     "CmdDel (shim): CNI request failed with status 400: 'pod not found during Multus GetPod'",
			wantText: "CmdDel (shim): CNI request failed with status 400: 'pod not found during Multus GetPod'",
			wantIs:   ErrPodNotFound,
		},
		{
			name:     "pod replaced by one of the same name (the daemon's words, from the soak)",
			status:   http.StatusBadRequest,
			body:     `ERRORED: Multus: [ns/p/25db2d04]: expected pod UID "25db2d04" but got "32ff6faa" from Kube API`,
			wantText: `ERRORED: Multus: [ns/p/25db2d04]: expected pod UID "25db2d04" but got "32ff6faa" from Kube API`,
			wantIs:   ErrPodNotFound,
		},
		{
			name:     "host-device DEL of a link no longer in the pod (the daemon's words, from the e2e cluster)",
			status:   http.StatusBadRequest,
			body:     `ERRORED: DelegateDel: error invoking DelegateDel - "host-device": error in getting result from DelNetwork: failed to find "npdev21": Link not found`,
			wantText: `ERRORED: DelegateDel: error invoking DelegateDel - "host-device": error in getting result from DelNetwork: failed to find "npdev21": Link not found`,
			wantIs:   ErrDeviceGone,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := startDaemon(t, func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			c := New(d.socket, 5*time.Second)
			for op, call := range map[string]func() error{
				"ADD": func() error { _, err := c.Add(context.Background(), request()); return err },
				"DEL": func() error { return c.Del(context.Background(), request()) },
			} {
				err := call()
				if err == nil {
					t.Fatalf("%s succeeded, want an error", op)
				}
				if err.Error() != tt.wantText {
					t.Errorf("%s error text %q, want %q", op, err, tt.wantText)
				}
				var de *DaemonError
				if !errors.As(err, &de) || de.StatusCode != tt.status || de.CNICode != tt.wantCode {
					t.Errorf("%s error %#v, want a DaemonError with status %d code %d", op, err, tt.status, tt.wantCode)
				}
				for _, known := range []error{ErrInterfaceExists, ErrPodNotFound, ErrDaemonUnavailable, ErrDeviceGone} {
					want := tt.wantIs != nil && errors.Is(tt.wantIs, known)
					if errors.Is(err, known) != want {
						t.Errorf("%s: errors.Is(%q, %v) = %v", op, err, known, !want)
					}
				}
			}
		})
	}
}

func TestAddResultEdgeCases(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr bool
	}{
		{name: "malformed result", body: `{"Result": [`, wantErr: true},
		{name: "empty body is an empty result", body: ""},
		{name: "null result is an empty result", body: `{"Result": null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := startDaemon(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, tt.body) })
			res, err := New(d.socket, 5*time.Second).Add(context.Background(), request())
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %+v, want an error", res)
				}
				return
			}
			if err != nil || res == nil || len(res.IPs) != 0 {
				t.Fatalf("got %+v, %v; want an empty result", res, err)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	d := startDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	c := New(d.socket, 200*time.Millisecond)

	for op, call := range map[string]func() error{
		"ADD":   func() error { _, err := c.Add(context.Background(), request()); return err },
		"DEL":   func() error { return c.Del(context.Background(), request()) },
		"Check": func() error { return c.Check(context.Background()) },
	} {
		start := time.Now()
		err := call()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: error %v, want a deadline error", op, err)
		}
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Errorf("%s took %s despite a 200ms timeout", op, elapsed)
		}
	}
}

func TestMissingSocket(t *testing.T) {
	socket := shortSocketPath(t) // its directory exists, the socket does not
	c := New(socket, time.Second)
	for op, call := range map[string]func() error{
		"ADD":   func() error { _, err := c.Add(context.Background(), request()); return err },
		"DEL":   func() error { return c.Del(context.Background(), request()) },
		"Check": func() error { return c.Check(context.Background()) },
	} {
		err := call()
		if err == nil || !strings.Contains(err.Error(), socket) {
			t.Errorf("%s: error %v does not name the socket %s", op, err, socket)
		}
		if !errors.Is(err, ErrDaemonUnavailable) {
			t.Errorf("%s: error %v is not ErrDaemonUnavailable", op, err)
		}
	}
}

func TestValidation(t *testing.T) {
	d := startDaemon(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, addResult) })
	c := New(d.socket, time.Second)
	tests := []struct {
		name   string
		mutate func(r *Request)
		want   string
	}{
		{"empty interface name", func(r *Request) { r.IfName = "" }, "interface name"},
		{"empty sandbox", func(r *Request) { r.SandboxID = "" }, "sandbox ID"},
		{"empty netns", func(r *Request) { r.NetNS = "" }, "netns"},
		{"empty pod name", func(r *Request) { r.PodName = "" }, "pod name"},
		{"empty pod UID", func(r *Request) { r.PodUID = "" }, "pod UID"},
		{"separator in CNI_ARGS value", func(r *Request) { r.PodNamespace = "a;b" }, "pod namespace"},
		{"empty config", func(r *Request) { r.Config = nil }, "config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request()
			tt.mutate(&r)
			if _, err := c.Add(context.Background(), r); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Add error %v, want one mentioning %q", err, tt.want)
			}
			if err := c.Del(context.Background(), r); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Del error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	if n := d.count(); n != 0 {
		t.Errorf("%d invalid requests reached the daemon", n)
	}
}

func TestCheck(t *testing.T) {
	healthy := atomic.Bool{}
	healthy.Store(true)
	d := startDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.MultusHealthAPIEndpoint || !healthy.Load() {
			http.Error(w, "not healthy", http.StatusServiceUnavailable)
		}
	})
	c := New(d.socket, time.Second)
	if err := c.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	healthy.Store(false)
	if err := c.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "not healthy") {
		t.Fatalf("Check of an unhealthy daemon: %v", err)
	}
}

func TestConnectionsAreReused(t *testing.T) {
	d := startDaemon(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, addResult) })
	c := New(d.socket, time.Second)
	for range 5 {
		if _, err := c.Add(context.Background(), request()); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.conns.Load(); n != 1 {
		t.Errorf("5 sequential calls opened %d connections, want 1", n)
	}
}
