// Package config reads the opaque configuration of a netplug.io ResourceClaim: what one
// allocated CNI device is to become inside the pod. It takes one of two forms:
//
//	{"network": "ns/name", "interface": "net1", "ips": ["10.1.0.5/24"], "mac": "02:..", "cni-args": {..}}
//	{"config": {"cniVersion": "1.0.0", "type": "macvlan", ...}, "interface": "net1"}
//
// The first names a NetworkAttachmentDefinition, with the vocabulary of the network-selection
// annotation ("name" alone means the claim's namespace); the second carries the CNI config
// inline. ips, mac and cni-args are accepted in both. Decoding is strict: an unknown field, both
// forms at once, neither, or a field that does not validate is an error that says which.
// Validation is pkg/attachment's, so a claim and an annotation are judged alike.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/netplug/netplug/pkg/attachment"
)

// DriverName is netplug's DRA driver name, the driver of the opaque configs it reads.
const DriverName = "netplug.io"

// Attachment is one claim device's validated configuration.
type Attachment struct {
	// Namespace and Network name the NAD (NAD form); for the inline form they are the claim's
	// namespace and name, which is how network-status names the interface.
	Namespace string `json:"namespace"`
	Network   string `json:"network"`
	// Inline is the CNI config of the inline form (nil for the NAD form).
	Inline json.RawMessage `json:"inline,omitempty"`
	// Interface is the interface name inside the pod.
	Interface string `json:"interface"`
	// Attributes are the requested IPs, MAC and cni-args.
	Attributes attachment.Attributes `json:"attributes"`
}

// NAD reports whether the attachment names a NetworkAttachmentDefinition.
func (a Attachment) NAD() bool { return a.Inline == nil }

// Planner is the attachment as the planner and executor see it.
func (a Attachment) Planner() attachment.Attachment {
	return attachment.Attachment{Namespace: a.Namespace, Network: a.Network, Interface: a.Interface,
		Attributes: a.Attributes, AttributesKnown: true, Index: -1, Source: attachment.SourceClaim}
}

// raw is the wire form; pointers tell a missing field from an empty one.
type raw struct {
	Network   *string                `json:"network"`
	Config    json.RawMessage        `json:"config"`
	Interface string                 `json:"interface"`
	IPs       []string               `json:"ips"`
	MAC       string                 `json:"mac"`
	CNIArgs   map[string]interface{} `json:"cni-args"`
}

// Parse decodes and validates one opaque configuration of a claim in claimNamespace named
// claimName.
func Parse(data []byte, claimNamespace, claimName string) (Attachment, error) {
	var r raw
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Attachment{}, fmt.Errorf("invalid %s configuration: %w", DriverName, err)
	}
	if dec.More() {
		return Attachment{}, fmt.Errorf("invalid %s configuration: data after the JSON object", DriverName)
	}
	hasConfig := len(r.Config) > 0 && !bytes.Equal(bytes.TrimSpace(r.Config), []byte("null"))
	switch {
	case r.Network != nil && hasConfig:
		return Attachment{}, errors.New(`"network" and "config" are exclusive: name a NetworkAttachmentDefinition or give a CNI config inline, not both`)
	case r.Network == nil && !hasConfig:
		return Attachment{}, errors.New(`either "network" (a NetworkAttachmentDefinition, "namespace/name") or "config" (an inline CNI config) is required`)
	case r.Interface == "":
		return Attachment{}, errors.New(`"interface" is required: the name of the interface inside the pod, e.g. "net1"`)
	}
	a := Attachment{Interface: r.Interface, Attributes: attachment.Attributes{IPs: r.IPs, MAC: r.MAC, CNIArgs: r.CNIArgs}}
	if r.Network != nil {
		ns, name, found := strings.Cut(*r.Network, "/")
		if !found {
			ns, name = claimNamespace, *r.Network
		}
		a.Namespace, a.Network = ns, name
	} else {
		if err := validateCNIConfig(r.Config); err != nil {
			return Attachment{}, fmt.Errorf(`"config": %w`, err)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, r.Config); err != nil {
			return Attachment{}, fmt.Errorf(`"config": %w`, err)
		}
		a.Inline = buf.Bytes()
	}
	if _, err := attachment.ValidateRequest(a.Planner()); err != nil {
		return Attachment{}, err
	}
	if a.Inline != nil {
		a.Namespace, a.Network = claimNamespace, claimName
	}
	return a, nil
}

// validateCNIConfig checks what Multus needs of a delegate config: a JSON object with a
// cniVersion and a name, and either a plugin type or a list of plugins.
func validateCNIConfig(data json.RawMessage) error {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(data, &c); err != nil || c == nil {
		return errors.New("want a CNI config object")
	}
	for _, k := range []string{"cniVersion", "name"} {
		var s string
		if json.Unmarshal(c[k], &s) != nil || s == "" {
			return fmt.Errorf("%q is required (a non-empty string)", k)
		}
	}
	var typ string
	var plugins []map[string]json.RawMessage
	hasType := json.Unmarshal(c["type"], &typ) == nil && typ != ""
	hasPlugins := json.Unmarshal(c["plugins"], &plugins) == nil && len(plugins) > 0
	if hasType == hasPlugins {
		return errors.New(`want exactly one of "type" (a plugin) or "plugins" (a list)`)
	}
	return nil
}

// ForDevice returns the configuration of one allocated device of claim: the last opaque
// netplug.io config that applies to the device's request (class configs come before claim
// configs in the allocation, so a claim's overrides its class's).
func ForDevice(claim *resourceapi.ResourceClaim, result resourceapi.DeviceRequestAllocationResult) (Attachment, error) {
	if claim.Status.Allocation == nil {
		return Attachment{}, errors.New("the claim is not allocated")
	}
	data := configFor(claim, result)
	if data == nil {
		return Attachment{}, fmt.Errorf("request %q has no %s configuration (spec.devices.config[].opaque with driver %s)", result.Request, DriverName, DriverName)
	}
	a, err := Parse(data, claim.Namespace, claim.Name)
	if err != nil {
		return Attachment{}, fmt.Errorf("request %q: %w", result.Request, err)
	}
	return a, nil
}

// configFor is the last opaque netplug.io config of the allocation that applies to result's
// request (nil when none does).
func configFor(claim *resourceapi.ResourceClaim, result resourceapi.DeviceRequestAllocationResult) []byte {
	request, _, _ := strings.Cut(result.Request, "/")
	var data []byte
	for _, c := range claim.Status.Allocation.Devices.Config {
		if c.Opaque == nil || c.Opaque.Driver != DriverName {
			continue
		}
		if len(c.Requests) > 0 && !slices.Contains(c.Requests, request) && !slices.Contains(c.Requests, result.Request) {
			continue
		}
		data = c.Opaque.Parameters.Raw
	}
	return data
}

// nicRaw is the wire form of a pool NIC device's configuration: only the interface name.
type nicRaw struct {
	Interface string `json:"interface"`
}

// ForNIC returns the interface name a pool NIC device (class netplug.io-nic) is to take in the
// pod: the "interface" of its opaque netplug.io config, or "" (keep the NIC's own name) when it
// has none. A NIC moves in as it is, with its host addresses, so "interface" is the only field:
// "network", "config", "ips", "mac" or anything else is an error.
func ForNIC(claim *resourceapi.ResourceClaim, result resourceapi.DeviceRequestAllocationResult) (string, error) {
	if claim.Status.Allocation == nil {
		return "", errors.New("the claim is not allocated")
	}
	data := configFor(claim, result)
	if data == nil {
		return "", nil
	}
	var r nicRaw
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return "", fmt.Errorf("request %q: invalid %s configuration for a pool NIC (it takes only \"interface\"): %w", result.Request, DriverName, err)
	}
	if dec.More() {
		return "", fmt.Errorf("request %q: invalid %s configuration: data after the JSON object", result.Request, DriverName)
	}
	if r.Interface != "" {
		if err := attachment.ValidateInterfaceName(r.Interface); err != nil {
			return "", fmt.Errorf("request %q: %w", result.Request, err)
		}
	}
	return r.Interface, nil
}
