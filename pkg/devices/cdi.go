package devices

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CDI (Container Device Interface) specs for character-device pools: the kubelet passes the CDI
// device names that Allocate returns to a runtime that supports CDI (containerd >= 1.7), which
// injects the nodes the spec describes. The DeviceSpecs stay in the answer for runtimes without
// CDI; a CDI-aware runtime replaces a node of the same path instead of adding it twice.

// cdiVersion is the oldest CDI spec version with everything the spec uses (device nodes).
const cdiVersion = "0.5.0"

type cdiSpec struct {
	Version string      `json:"cdiVersion"`
	Kind    string      `json:"kind"`
	Devices []cdiDevice `json:"devices"`
}

type cdiDevice struct {
	Name  string   `json:"name"`
	Edits cdiEdits `json:"containerEdits"`
}

type cdiEdits struct {
	DeviceNodes []cdiNode `json:"deviceNodes"`
}

type cdiNode struct {
	Path        string `json:"path"`
	Permissions string `json:"permissions"`
}

// CDISpecFile is the name of pool p's spec in the CDI directory (netplug.io-tun.json).
func CDISpecFile(p Pool) string { return strings.ReplaceAll(p.ResourceName, "/", "-") + ".json" }

// WriteCDISpec writes the CDI spec of character-device pool p into dir (atomically: a runtime
// may read it at any moment), one CDI device per node, and returns the qualified CDI name of
// each node's path (netplug.io/tun=dev-net-tun).
func WriteCDISpec(dir string, p Pool) (map[string]string, error) {
	spec := cdiSpec{Version: cdiVersion, Kind: p.ResourceName}
	names := map[string]string{}
	for _, path := range p.CharDevices {
		name := charID(path, 0, 1)
		spec.Devices = append(spec.Devices, cdiDevice{Name: name, Edits: cdiEdits{DeviceNodes: []cdiNode{{Path: path, Permissions: "rw"}}}})
		names[path] = p.ResourceName + "=" + name
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".netplug-cdi-*")
	if err != nil {
		return nil, fmt.Errorf("writing the CDI spec of %s: %w", p.ResourceName, err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone once renamed
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		_ = tmp.Close()
		return nil, fmt.Errorf("writing the CDI spec of %s: %w", p.ResourceName, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, CDISpecFile(p))); err != nil {
		return nil, fmt.Errorf("writing the CDI spec of %s: %w", p.ResourceName, err)
	}
	return names, nil
}
