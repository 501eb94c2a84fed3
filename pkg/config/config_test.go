package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseOverlaysDefaults(t *testing.T) {
	tests := []struct {
		name string
		json string
		want func(c *Config)
	}{
		{name: "empty data", json: "", want: func(*Config) {}},
		{name: "empty object", json: "{}", want: func(*Config) {}},
		{name: "null keeps default", json: `{"workers": null}`, want: func(*Config) {}},
		{
			name: "upstream containerd ConfigMap",
			json: `{"criSocketPath": "/host/run/containerd/containerd.sock",
			        "multusSocketPath": "/host/run/multus/multus.sock"}`,
			want: func(c *Config) {
				c.CRISocketPath = "/host/run/containerd/containerd.sock"
				c.MultusSocketPath = "/host/run/multus/multus.sock"
			},
		},
		{
			name: "upstream CRI-O ConfigMap",
			json: `{"criType": "crio", "criSocketPath": "/host/run/crio/crio.sock",
			        "multusSocketPath": "/host/run/multus/multus.sock"}`,
			want: func(c *Config) {
				c.CRIType = "crio"
				c.CRISocketPath = "/host/run/crio/crio.sock"
				c.MultusSocketPath = "/host/run/multus/multus.sock"
			},
		},
		{
			name: "unix scheme prefix",
			json: `{"criSocketPath": "unix:///run/crio/crio.sock"}`,
			want: func(c *Config) { c.CRISocketPath = "/run/crio/crio.sock" },
		},
		{
			name: "every key",
			json: `{"workers": 3, "criTimeout": "2s", "multusTimeout": "1m30s",
			        "namespaceIsolation": true, "globalNamespaces": ["kube-system", "shared"],
			        "apiQPS": 12.5, "apiBurst": 20, "resyncPeriod": "0s", "criType": "containerd"}`,
			want: func(c *Config) {
				c.Workers = 3
				c.CRITimeout = 2 * time.Second
				c.MultusTimeout = 90 * time.Second
				c.NamespaceIsolation = true
				c.GlobalNamespaces = []string{"kube-system", "shared"}
				c.APIQPS = 12.5
				c.APIBurst = 20
				c.ResyncPeriod = 0
				c.CRIType = "containerd"
				c.Explicit.NamespaceIsolation, c.Explicit.GlobalNamespaces = true, true
			},
		},
		{
			name: "globalNamespaces as Multus string",
			json: `{"globalNamespaces": "default, kube-system,,default"}`,
			want: func(c *Config) {
				c.GlobalNamespaces = []string{"default", "kube-system"}
				c.Explicit.GlobalNamespaces = true
			},
		},
		{
			name: "globalNamespaces empty string keeps the Multus default",
			json: `{"globalNamespaces": ""}`,
			want: func(*Config) {},
		},
		{
			name: "globalNamespaces empty list means none",
			json: `{"globalNamespaces": []}`,
			want: func(c *Config) { c.GlobalNamespaces, c.Explicit.GlobalNamespaces = []string{}, true },
		},
		{name: "workers upper bound", json: `{"workers": 256}`, want: func(c *Config) { c.Workers = 256 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.json))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse mismatch\n got: %+v\nwant: %+v", got, want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		json string
		// every fragment must appear in the error text
		want []string
	}{
		{name: "not an object", json: `[1]`, want: []string{"not a JSON object"}},
		{name: "syntax", json: `{"workers": }`, want: []string{"not a JSON object"}},
		{name: "unknown key", json: `{"worker": 3}`, want: []string{`"worker"`, "unknown"}},
		{name: "relative socket", json: `{"criSocketPath": "run/c.sock"}`, want: []string{`"criSocketPath"`, `"run/c.sock"`, "absolute"}},
		{name: "socket not a string", json: `{"multusSocketPath": 5}`, want: []string{`"multusSocketPath"`, "5"}},
		{name: "bad criType", json: `{"criType": "docker"}`, want: []string{`"criType"`, `"docker"`}},
		{name: "zero workers", json: `{"workers": 0}`, want: []string{`"workers"`, "0", "1..256"}},
		{name: "too many workers", json: `{"workers": 257}`, want: []string{`"workers"`, "257"}},
		{name: "fractional workers", json: `{"workers": 2.5}`, want: []string{`"workers"`, "2.5"}},
		{name: "workers as string", json: `{"workers": "4"}`, want: []string{`"workers"`, `"4"`}},
		{name: "duration as number", json: `{"criTimeout": 5}`, want: []string{`"criTimeout"`, "5"}},
		{name: "unparsable duration", json: `{"criTimeout": "5 s"}`, want: []string{`"criTimeout"`, `"5 s"`}},
		{name: "zero timeout", json: `{"multusTimeout": "0s"}`, want: []string{`"multusTimeout"`, `"0s"`, "positive"}},
		{name: "negative resync", json: `{"resyncPeriod": "-1m"}`, want: []string{`"resyncPeriod"`, `"-1m"`}},
		{name: "isolation not bool", json: `{"namespaceIsolation": "yes"}`, want: []string{`"namespaceIsolation"`, `"yes"`}},
		{name: "bad namespace", json: `{"globalNamespaces": "default,Kube_System"}`, want: []string{`"globalNamespaces"`, "Kube_System"}},
		{name: "namespaces wrong type", json: `{"globalNamespaces": 3}`, want: []string{`"globalNamespaces"`, "3"}},
		{name: "zero qps", json: `{"apiQPS": 0}`, want: []string{`"apiQPS"`, "0"}},
		{name: "negative qps", json: `{"apiQPS": -1}`, want: []string{`"apiQPS"`, "-1"}},
		{name: "zero burst", json: `{"apiBurst": 0}`, want: []string{`"apiBurst"`, "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.json))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			for _, frag := range tt.want {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("error %q does not mention %q", err, frag)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Run("empty path gives defaults", func(t *testing.T) {
		got, err := Load("")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, Default()) {
			t.Errorf("got %+v, want defaults", got)
		}
	})
	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(path, []byte(`{"workers": 2}`), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if got.Workers != 2 {
			t.Errorf("Workers = %d, want 2", got.Workers)
		}
	})
	t.Run("missing file names the path", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "absent.json")
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("error %v does not name %s", err, path)
		}
	})
	t.Run("invalid file names the path and the key", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(path, []byte(`{"bogus": 1}`), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "bogus") {
			t.Errorf("error %v does not name %s and the key", err, path)
		}
	})
}

func TestIsGlobalNamespace(t *testing.T) {
	cfg, err := Parse([]byte(`{"globalNamespaces": "default,kube-system"}`))
	if err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]bool{"default": true, "kube-system": true, "team-a": false, "": false} {
		if got := cfg.IsGlobalNamespace(ns); got != want {
			t.Errorf("IsGlobalNamespace(%q) = %v, want %v", ns, got, want)
		}
	}
	if !Default().IsGlobalNamespace("default") {
		t.Error(`"default" must be global by default, as in Multus`)
	}
}

func TestDefaultIsValid(t *testing.T) {
	// The defaults must survive their own validation when written out explicitly.
	d := Default()
	data := `{"criSocketPath": "` + d.CRISocketPath + `", "multusSocketPath": "` + d.MultusSocketPath + `",
	          "workers": 8, "criTimeout": "` + d.CRITimeout.String() + `", "multusTimeout": "` + d.MultusTimeout.String() + `",
	          "apiQPS": 50, "apiBurst": 100, "resyncPeriod": "` + d.ResyncPeriod.String() + `", "globalNamespaces": ["default"]}`
	got, err := Parse([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	d.Explicit.GlobalNamespaces = true
	if !reflect.DeepEqual(got, d) {
		t.Errorf("got %+v, want %+v", got, d)
	}
}

// Hot-plug is never more permissive than Multus at pod creation: Multus's isolation settings
// apply to each key netplug's own file leaves out; an explicit key wins.
func TestApplyMultus(t *testing.T) {
	multus := []byte(`{"cniVersion":"0.4.0","namespaceIsolation":true,"globalNamespaces":"default,shared","socketDir":"/run/multus"}`)
	tests := []struct {
		name, file    string
		wantIsolation bool
		wantGlobal    []string
		wantTook      []string
	}{
		{name: "neither set: Multus's both", file: `{}`, wantIsolation: true, wantGlobal: []string{"default", "shared"},
			wantTook: []string{"namespaceIsolation", "globalNamespaces"}},
		{name: "isolation set explicitly wins", file: `{"namespaceIsolation": false}`, wantIsolation: false,
			wantGlobal: []string{"default", "shared"}, wantTook: []string{"globalNamespaces"}},
		{name: "global namespaces set explicitly win", file: `{"globalNamespaces": ["x"]}`, wantIsolation: true,
			wantGlobal: []string{"x"}, wantTook: []string{"namespaceIsolation"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			took, err := cfg.ApplyMultus(multus)
			if err != nil || !reflect.DeepEqual(took, tt.wantTook) {
				t.Fatalf("took %v, %v; want %v", took, err, tt.wantTook)
			}
			if cfg.NamespaceIsolation != tt.wantIsolation || !reflect.DeepEqual(cfg.GlobalNamespaces, tt.wantGlobal) {
				t.Fatalf("isolation %v %v, want %v %v", cfg.NamespaceIsolation, cfg.GlobalNamespaces, tt.wantIsolation, tt.wantGlobal)
			}
		})
	}
	cfg := Default()
	if _, err := cfg.ApplyMultus([]byte("{")); err == nil {
		t.Fatal("a malformed Multus config must be an error")
	}
	cfg.MultusDaemonConfigPath = filepath.Join(t.TempDir(), "absent.json")
	if took, err := cfg.LoadMultus(); err != nil || took != nil {
		t.Fatalf("an absent Multus config: %v %v", took, err)
	}
	p := filepath.Join(t.TempDir(), "daemon-config.json")
	if err := os.WriteFile(p, multus, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.MultusDaemonConfigPath = p
	if _, err := cfg.LoadMultus(); err != nil || !cfg.NamespaceIsolation {
		t.Fatalf("LoadMultus: %v, isolation %v", err, cfg.NamespaceIsolation)
	}
}

func TestDevicePools(t *testing.T) {
	cfg, err := Parse([]byte(`{"devicePools":[{"resourceName":"netplug.io/veth","interfacePrefix":"npdev"}]}`))
	if err != nil || len(cfg.DevicePools) != 1 || cfg.DevicePools[0].ResourceName != "netplug.io/veth" {
		t.Fatalf("Parse = %+v, %v", cfg.DevicePools, err)
	}
	if len(Default().DevicePools) != 0 {
		t.Error("pools on by default")
	}
	for _, bad := range []string{
		`{"devicePools":[{"resourceName":"netplug.io/veth","interfaceGlob":"np*"}]}`,
		`{"devicePools":[{"resourceName":"netplug.io/a","driver":"veth"},{"resourceName":"netplug.io/b","driver":"veth"}]}`,
	} {
		_, err := Parse([]byte(bad))
		if err == nil || !strings.Contains(err.Error(), `config key "devicePools"`) {
			t.Errorf("%s: err = %v, want one naming the key", bad, err)
		}
	}
}

func TestParseDRA(t *testing.T) {
	for _, tt := range []struct {
		data    string
		want    DRA
		wantErr string
	}{
		{data: `{}`, want: DRA{CNIDevices: 16}},
		{data: `{"dra":{"enabled":true}}`, want: DRA{Enabled: true, CNIDevices: 16}},
		{data: `{"dra":{"enabled":true,"cniDevices":4}}`, want: DRA{Enabled: true, CNIDevices: 4}},
		{data: `{"dra":{"enabled":true,"devices":4}}`, wantErr: `unknown field "devices"`},
		{data: `{"dra":{"cniDevices":0}}`, wantErr: "1..128"},
		{data: `{"dra":{"cniDevices":129}}`, wantErr: "1..128"},
		{data: `{"dra":{"cniDevices":2.5}}`, wantErr: "1..128"},
		{data: `{"dra":{"enabled":"yes"}}`, wantErr: `config key "dra"`},
		{data: `{"dra":true}`, wantErr: `config key "dra"`},
	} {
		cfg, err := Parse([]byte(tt.data))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want %q", tt.data, err, tt.wantErr)
			}
			continue
		}
		if err != nil || cfg.DRA != tt.want {
			t.Errorf("%s: %+v %v, want %+v", tt.data, cfg.DRA, err, tt.want)
		}
	}
}
