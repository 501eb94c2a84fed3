package devices

import (
	"encoding/json"
	"fmt"
	"net/netip"
)

// HostState is what a NIC had on the host before netplug moved it into a pod: moving a link to
// another network namespace drops its addresses, so they go with it (static IPAM of the
// generated config) and come back with it (RestoreHost). The MTU survives a move; it is kept to
// put it back if something changed it in the pod.
type HostState struct {
	Addresses []netip.Prefix `json:"addresses,omitempty"`
	MTU       int            `json:"mtu,omitempty"`
}

// hostDeviceConfig is the CNI config netplug generates for a NIC of a pool without a NAD. The
// netplugHost key is ignored by host-device and read back on release.
type hostDeviceConfig struct {
	CNIVersion string     `json:"cniVersion"`
	Name       string     `json:"name"`
	Type       string     `json:"type"`
	Device     string     `json:"device"`
	IPAM       *ipam      `json:"ipam,omitempty"`
	Host       *HostState `json:"netplugHost,omitempty"`
}

type ipam struct {
	Type      string        `json:"type"`
	Addresses []ipamAddress `json:"addresses"`
}

type ipamAddress struct {
	Address string `json:"address"`
}

// NetworkName is the CNI network name of pool p's generated config.
func NetworkName(p Pool) string { return "netplug-" + p.Name() }

// HostDeviceConfig is the host-device config that moves the host link iface into a pod under
// its own name, with the addresses it had on the host (static IPAM).
func HostDeviceConfig(p Pool, iface string, host HostState) []byte {
	c := hostDeviceConfig{CNIVersion: "0.4.0", Name: NetworkName(p), Type: "host-device", Device: iface}
	if len(host.Addresses) > 0 {
		c.IPAM = &ipam{Type: "static"}
		for _, a := range host.Addresses {
			c.IPAM.Addresses = append(c.IPAM.Addresses, ipamAddress{Address: a.String()})
		}
	}
	if len(host.Addresses) > 0 || host.MTU > 0 {
		c.Host = &host
	}
	data, _ := json.Marshal(c) // plain types: never fails
	return data
}

// ParseHostDeviceConfig reads back the link and its host state from a generated config.
func ParseHostDeviceConfig(config []byte) (string, HostState, error) {
	var c hostDeviceConfig
	if err := json.Unmarshal(config, &c); err != nil {
		return "", HostState{}, fmt.Errorf("not a netplug host-device config: %w", err)
	}
	if c.Type != "host-device" || c.Device == "" {
		return "", HostState{}, fmt.Errorf("not a netplug host-device config (type %q, device %q)", c.Type, c.Device)
	}
	var host HostState
	if c.Host != nil {
		host = *c.Host
	}
	return c.Device, host, nil
}
