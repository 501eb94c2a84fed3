// Package config reads netplug's ConfigMap JSON: its keys, their defaults and their validation.
//
// The file is a single JSON object. Every key is optional; a missing key keeps its default:
//
//	{
//	  "criSocketPath":      "/run/containerd/containerd.sock",  // CRI runtime socket (containerd or CRI-O)
//	  "multusSocketPath":   "/run/multus/multus.sock",          // Multus thick daemon socket
//	  "workers":            8,                                  // parallel reconcilers, 1..256
//	  "criTimeout":         "5s",                               // deadline of each CRI RPC, > 0
//	  "multusTimeout":      "60s",                              // deadline of each /delegate call, > 0
//	  "namespaceIsolation": false,                              // Multus namespace isolation
//	  "globalNamespaces":   "default",                          // list, or Multus's comma-separated string
//	  "apiQPS":             50,                                 // client-go rate limit, > 0
//	  "apiBurst":           100,                                // client-go burst, >= 1
//	  "resyncPeriod":       "5m",                               // informer resync, >= 0 (0 disables)
//	  "maxNetworksPerPod":  32,                                 // cap on one pod's selection elements, 1..1024
//	  "reconcileBudget":    "2m",                               // time in which one reconcile starts steps, > 0
//	  "releaseWorkers":     2,                                  // workers releasing terminating/deleted pods, 1..64
//	  "finalizerTimeout":   "5m",                               // after a pod's deletion deadline, when the finalizer goes anyway, > 0
//	  "multusDaemonConfigPath": "/etc/cni/net.d/multus.d/daemon-config.json", // Multus's own isolation settings; "" ignores them
//	  "devicePools":        [],                                 // device pools (pkg/devices); none: the feature is off
//	  "dra": {"enabled": false, "cniDevices": 16}               // DRA driver netplug.io; cniDevices 1..128
//	}
//
// Namespace isolation is never more permissive than Multus at pod creation: when the Multus
// daemon config is readable, its namespaceIsolation and globalNamespaces apply unless this file
// sets them explicitly (see ApplyMultus).
//
// Upstream compatibility: a ConfigMap written for the upstream multus-dynamic-networks-controller
// is accepted as is. Its keys are "criSocketPath", "multusSocketPath" (same meaning here) and
// "criType" ("containerd" or "crio"). netplug speaks the CRI gRPC API to both runtimes, so
// "criType" does not change behaviour: it is validated like upstream does and kept in
// Config.CRIType for logging. Socket paths may carry crictl's "unix://" prefix.
//
// Any other key is an error that names the key, so a typo never silently falls back to a default.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/netplug/netplug/pkg/devices"
)

// Config is netplug's node-agent configuration.
type Config struct {
	CRISocketPath      string        // "criSocketPath"
	MultusSocketPath   string        // "multusSocketPath"
	CRIType            string        // "criType": upstream key; informational, CRI is used for both runtimes
	Workers            int           // "workers"
	CRITimeout         time.Duration // "criTimeout"
	MultusTimeout      time.Duration // "multusTimeout"
	NamespaceIsolation bool          // "namespaceIsolation"
	GlobalNamespaces   []string      // "globalNamespaces"
	APIQPS             float32       // "apiQPS"
	APIBurst           int           // "apiBurst"
	ResyncPeriod       time.Duration // "resyncPeriod"
	MaxNetworksPerPod  int           // "maxNetworksPerPod"
	ReconcileBudget    time.Duration // "reconcileBudget"
	ReleaseWorkers     int           // "releaseWorkers"
	FinalizerTimeout   time.Duration // "finalizerTimeout"
	// MultusDaemonConfigPath is where Multus's daemon config is read from ("" disables).
	MultusDaemonConfigPath string // "multusDaemonConfigPath"
	// DevicePools are the device pools netplug advertises to the kubelet; none by default.
	DevicePools []devices.Pool // "devicePools"
	// DRA configures the DRA driver (netplug.io).
	DRA DRA // "dra"
	// Explicit records which of the isolation keys the file set, so Multus's values apply to
	// the others.
	Explicit struct{ NamespaceIsolation, GlobalNamespaces bool }
}

// DRA is the "dra" key: {"enabled": bool, "cniDevices": int}. Unknown keys are errors.
type DRA struct {
	Enabled bool
	// CNIDevices is how many virtual CNI devices the node's ResourceSlice publishes: how many
	// netplug.io-cni claims the node's pods can hold at once.
	CNIDevices int
}

// MaxCNIDevices caps the node's virtual CNI devices (one ResourceSlice holds up to 128).
const MaxCNIDevices = 128

func parseDRA(cfg *Config, raw json.RawMessage) error {
	var d struct {
		Enabled    *bool    `json:"enabled"`
		CNIDevices *float64 `json:"cniDevices"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf(`want {"enabled": bool, "cniDevices": 1..%d}: %w`, MaxCNIDevices, err)
	}
	if d.Enabled != nil {
		cfg.DRA.Enabled = *d.Enabled
	}
	if d.CNIDevices != nil {
		n := *d.CNIDevices
		if n != math.Trunc(n) || n < 1 || n > MaxCNIDevices {
			return fmt.Errorf("cniDevices: want an integer 1..%d", MaxCNIDevices)
		}
		cfg.DRA.CNIDevices = int(n)
	}
	return nil
}

// Limits and upstream values the validation refers to.
const (
	MaxWorkers = 256

	CRITypeContainerd = "containerd"
	CRITypeCRIO       = "crio"
)

// Default returns the configuration used for every key the file leaves out.
func Default() Config {
	return Config{
		CRISocketPath:    "/run/containerd/containerd.sock",
		MultusSocketPath: "/run/multus/multus.sock",
		Workers:          8,
		CRITimeout:       5 * time.Second,
		// A CNI ADD runs IPAM and plugins; a minute keeps a slow one from failing spuriously.
		MultusTimeout: 60 * time.Second,
		// Multus treats "default" as global when globalNamespaces is not set; so do we.
		GlobalNamespaces: []string{"default"},
		APIQPS:           50,
		APIBurst:         100,
		ResyncPeriod:     5 * time.Minute,
		// 32 is far beyond real use and keeps a runaway annotation from planning thousands of ADDs.
		MaxNetworksPerPod:      32,
		ReconcileBudget:        2 * time.Minute,
		ReleaseWorkers:         2,
		FinalizerTimeout:       5 * time.Minute,
		MultusDaemonConfigPath: "/etc/cni/net.d/multus.d/daemon-config.json",
		DRA:                    DRA{CNIDevices: 16},
	}
}

// Load reads and parses the file at path. An empty path means "no file": the defaults.
func Load(path string) (Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config file %q: %w", path, err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("config file %q: %w", path, err)
	}
	return cfg, nil
}

// field decodes one key's raw JSON value into cfg; the error says what was wrong with the value.
type field func(cfg *Config, raw json.RawMessage) error

var fields = map[string]field{
	"criSocketPath":          socketField(func(c *Config) *string { return &c.CRISocketPath }),
	"multusSocketPath":       socketField(func(c *Config) *string { return &c.MultusSocketPath }),
	"criType":                parseCRIType,
	"workers":                intField(func(c *Config) *int { return &c.Workers }, 1, MaxWorkers),
	"criTimeout":             durationField(func(c *Config) *time.Duration { return &c.CRITimeout }, false),
	"multusTimeout":          durationField(func(c *Config) *time.Duration { return &c.MultusTimeout }, false),
	"namespaceIsolation":     parseNamespaceIsolation,
	"globalNamespaces":       parseGlobalNamespaces,
	"apiQPS":                 parseAPIQPS,
	"apiBurst":               intField(func(c *Config) *int { return &c.APIBurst }, 1, math.MaxInt32),
	"resyncPeriod":           durationField(func(c *Config) *time.Duration { return &c.ResyncPeriod }, true),
	"maxNetworksPerPod":      intField(func(c *Config) *int { return &c.MaxNetworksPerPod }, 1, 1024),
	"reconcileBudget":        durationField(func(c *Config) *time.Duration { return &c.ReconcileBudget }, false),
	"releaseWorkers":         intField(func(c *Config) *int { return &c.ReleaseWorkers }, 1, 64),
	"finalizerTimeout":       durationField(func(c *Config) *time.Duration { return &c.FinalizerTimeout }, false),
	"multusDaemonConfigPath": parseMultusDaemonConfigPath,
	devices.PoolsKey:         parseDevicePools,
	"dra":                    parseDRA,
}

func parseDevicePools(cfg *Config, raw json.RawMessage) error {
	pools, err := devices.ParsePools(raw)
	if err != nil {
		return err
	}
	cfg.DevicePools = pools
	return nil
}

// Parse overlays the JSON object in data on Default() and validates the result.
// Empty (or whitespace-only) data yields the defaults, as an empty ConfigMap key would.
// A JSON null keeps the key's default.
func Parse(data []byte) (Config, error) {
	cfg := Default()
	if len(bytes.TrimSpace(data)) == 0 {
		return cfg, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("config is not a JSON object: %w", err)
	}
	// Sorted so that, with several problems, the same one is always reported.
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		parse, ok := fields[key]
		if !ok {
			return Config{}, fmt.Errorf("unknown config key %q (known keys: %s)", key, knownKeys())
		}
		value := raw[key]
		if string(bytes.TrimSpace(value)) == "null" {
			continue
		}
		if err := parse(&cfg, value); err != nil {
			return Config{}, fmt.Errorf("config key %q: invalid value %s: %w", key, compact(value), err)
		}
	}
	return cfg, nil
}

// IsGlobalNamespace reports whether NetworkAttachmentDefinitions in ns may be referenced from
// any namespace when namespace isolation is on.
func (c Config) IsGlobalNamespace(ns string) bool {
	return slices.Contains(c.GlobalNamespaces, ns)
}

func knownKeys() string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// compact renders a raw value on one line for error messages.
func compact(raw json.RawMessage) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

func socketField(target func(*Config) *string) field {
	return func(cfg *Config, raw json.RawMessage) error {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("want a string: %w", err)
		}
		// crictl and kubelet spell endpoints as unix:///path; accept that spelling too.
		path := strings.TrimPrefix(s, "unix://")
		if !filepath.IsAbs(path) {
			return fmt.Errorf("want an absolute socket path")
		}
		*target(cfg) = filepath.Clean(path)
		return nil
	}
}

func parseCRIType(cfg *Config, raw json.RawMessage) error {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("want a string: %w", err)
	}
	switch s {
	case "", CRITypeContainerd, CRITypeCRIO:
		cfg.CRIType = s
		return nil
	}
	return fmt.Errorf("want %q or %q", CRITypeContainerd, CRITypeCRIO)
}

func intField(target func(*Config) *int, lowest, highest int) field {
	return func(cfg *Config, raw json.RawMessage) error {
		// float64 rather than json.Number: json.Number also accepts a quoted "4".
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return fmt.Errorf("want an integer: %w", err)
		}
		if f != math.Trunc(f) {
			return fmt.Errorf("want an integer")
		}
		if f < float64(lowest) || f > float64(highest) {
			return fmt.Errorf("want %d..%d", lowest, highest)
		}
		*target(cfg) = int(f)
		return nil
	}
}

func durationField(target func(*Config) *time.Duration, zeroAllowed bool) field {
	return func(cfg *Config, raw json.RawMessage) error {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf(`want a duration string such as "5s": %w`, err)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		switch {
		case d < 0:
			return fmt.Errorf("want a non-negative duration")
		case d == 0 && !zeroAllowed:
			return fmt.Errorf("want a positive duration")
		}
		*target(cfg) = d
		return nil
	}
}

func parseNamespaceIsolation(cfg *Config, raw json.RawMessage) error {
	if err := json.Unmarshal(raw, &cfg.NamespaceIsolation); err != nil {
		return fmt.Errorf("want true or false: %w", err)
	}
	cfg.Explicit.NamespaceIsolation = true
	return nil
}

func parseMultusDaemonConfigPath(cfg *Config, raw json.RawMessage) error {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("want a string: %w", err)
	}
	if s != "" && !filepath.IsAbs(s) {
		return fmt.Errorf("want an absolute path, or \"\" to ignore Multus's settings")
	}
	cfg.MultusDaemonConfigPath = s
	return nil
}

// ApplyMultus takes namespaceIsolation and globalNamespaces from the Multus daemon config
// (its JSON) for each of the two that netplug's own file did not set, so that hot-plug is never
// more permissive than Multus at pod creation. It returns the keys it took.
func (c *Config) ApplyMultus(daemonConfig []byte) ([]string, error) {
	var m struct {
		NamespaceIsolation *bool   `json:"namespaceIsolation"`
		GlobalNamespaces   *string `json:"globalNamespaces"`
	}
	if err := json.Unmarshal(daemonConfig, &m); err != nil {
		return nil, fmt.Errorf("the Multus daemon config is not JSON: %w", err)
	}
	var took []string
	if m.NamespaceIsolation != nil && !c.Explicit.NamespaceIsolation {
		c.NamespaceIsolation = *m.NamespaceIsolation
		took = append(took, "namespaceIsolation")
	}
	if m.GlobalNamespaces != nil && !c.Explicit.GlobalNamespaces {
		explicit := c.Explicit
		raw, _ := json.Marshal(*m.GlobalNamespaces)
		if err := parseGlobalNamespaces(c, raw); err != nil {
			return took, fmt.Errorf("globalNamespaces of the Multus daemon config: %w", err)
		}
		c.Explicit = explicit
		took = append(took, "globalNamespaces")
	}
	return took, nil
}

// LoadMultus applies the Multus daemon config at c.MultusDaemonConfigPath, if there is one.
func (c *Config) LoadMultus() ([]string, error) {
	if c.MultusDaemonConfigPath == "" {
		return nil, nil
	}
	data, err := os.ReadFile(c.MultusDaemonConfigPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the Multus daemon config: %w", err)
	}
	return c.ApplyMultus(data)
}

func parseAPIQPS(cfg *Config, raw json.RawMessage) error {
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("want a number: %w", err)
	}
	if v <= 0 || v > math.MaxFloat32 {
		return fmt.Errorf("want a positive number")
	}
	cfg.APIQPS = float32(v)
	return nil
}

// parseGlobalNamespaces accepts a JSON list, or Multus's comma-separated string. Like Multus, an
// empty string keeps the default; an explicit empty list means no namespace is global.
func parseGlobalNamespaces(cfg *Config, raw json.RawMessage) error {
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return fmt.Errorf("want a list of namespaces or a comma-separated string")
		}
		if strings.TrimSpace(s) == "" {
			return nil
		}
		list = strings.Split(s, ",")
	}
	namespaces := make([]string, 0, len(list))
	for _, ns := range list {
		ns = strings.TrimSpace(ns)
		if ns == "" {
			continue
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("namespace %q: %s", ns, strings.Join(errs, "; "))
		}
		if !slices.Contains(namespaces, ns) {
			namespaces = append(namespaces, ns)
		}
	}
	cfg.GlobalNamespaces = namespaces
	cfg.Explicit.GlobalNamespaces = true
	return nil
}
