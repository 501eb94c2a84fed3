package devices

import (
	"encoding/json"
	"net"
	"net/netip"
	"testing"
)

func TestHostDeviceConfig(t *testing.T) {
	p := Pool{ResourceName: "netplug.io/veth", InterfacePrefix: "npdev"}
	host := HostState{Addresses: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/24"), netip.MustParsePrefix("fd00::2/64")}, MTU: 1400}
	cfg := HostDeviceConfig(p, "npdev1", host)
	var m map[string]interface{}
	if err := json.Unmarshal(cfg, &m); err != nil {
		t.Fatal(err)
	}
	if m["cniVersion"] != "0.4.0" || m["name"] != "netplug-veth" || m["type"] != "host-device" || m["device"] != "npdev1" {
		t.Fatalf("config = %s", cfg)
	}
	ipam := m["ipam"].(map[string]interface{})
	if ipam["type"] != "static" || len(ipam["addresses"].([]interface{})) != 2 {
		t.Fatalf("ipam = %v", ipam)
	}
	dev, back, err := ParseHostDeviceConfig(cfg)
	if err != nil || dev != "npdev1" || back.MTU != 1400 || len(back.Addresses) != 2 || back.Addresses[1] != host.Addresses[1] {
		t.Fatalf("parsed = %q %+v %v", dev, back, err)
	}
	bare := HostDeviceConfig(p, "npdev2", HostState{})
	if string(bare) != `{"cniVersion":"0.4.0","name":"netplug-veth","type":"host-device","device":"npdev2"}` {
		t.Fatalf("bare = %s", bare)
	}
	if _, h, err := ParseHostDeviceConfig(bare); err != nil || len(h.Addresses) != 0 {
		t.Fatalf("bare parsed = %+v %v", h, err)
	}
	for _, bad := range []string{`nope`, `{"type":"bridge"}`, `{"type":"host-device"}`} {
		if _, _, err := ParseHostDeviceConfig([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestPrefixes(t *testing.T) {
	_, a, _ := net.ParseCIDR("10.0.0.0/8")
	a.IP = net.ParseIP("10.1.2.3")
	_, ll, _ := net.ParseCIDR("fe80::1/64")
	ll.IP = net.ParseIP("fe80::1")
	v4mapped := &net.IPNet{IP: net.ParseIP("192.168.1.1"), Mask: net.CIDRMask(24, 32)}
	got := Prefixes([]*net.IPNet{a, ll, nil, v4mapped, {IP: []byte{1}, Mask: nil}})
	if len(got) != 2 || got[0].String() != "10.1.2.3/8" || got[1].String() != "192.168.1.1/24" {
		t.Fatalf("Prefixes = %v", got)
	}
}
