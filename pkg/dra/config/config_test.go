package config

import (
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const macvlan = `{"cniVersion":"1.0.0","name":"mv","type":"macvlan","master":"eth0","ipam":{"type":"host-local","subnet":"10.10.0.0/24"}}`

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    Attachment
		wantErr string
	}{
		{name: "nad reference", data: `{"network":"other/mv","interface":"net1","ips":["10.1.0.5/24"],"mac":"02:00:00:00:00:05"}`,
			want: Attachment{Namespace: "other", Network: "mv", Interface: "net1"}},
		{name: "nad in the claim's namespace", data: `{"network":"mv","interface":"net1"}`,
			want: Attachment{Namespace: "ns", Network: "mv", Interface: "net1"}},
		{name: "inline config", data: `{"config":` + macvlan + `,"interface":"net1"}`,
			want: Attachment{Namespace: "ns", Network: "claim", Interface: "net1"}},
		{name: "inline conflist", data: `{"config":{"cniVersion":"1.0.0","name":"l","plugins":[{"type":"bridge"}]},"interface":"eth9"}`,
			want: Attachment{Namespace: "ns", Network: "claim", Interface: "eth9"}},
		{name: "both forms", data: `{"network":"mv","config":` + macvlan + `,"interface":"net1"}`, wantErr: "exclusive"},
		{name: "neither form", data: `{"interface":"net1"}`, wantErr: "either"},
		{name: "unknown field", data: `{"network":"mv","interface":"net1","default-route":["10.0.0.1"]}`, wantErr: `unknown field "default-route"`},
		{name: "not an object", data: `["mv"]`, wantErr: "invalid netplug.io configuration"},
		{name: "trailing data", data: `{"network":"mv","interface":"net1"} {}`, wantErr: "after the JSON object"},
		{name: "no interface", data: `{"network":"mv"}`, wantErr: `"interface" is required`},
		{name: "bad interface", data: `{"network":"mv","interface":"net/1"}`, wantErr: "not allowed"},
		{name: "long interface", data: `{"network":"mv","interface":"abcdefghijklmnop"}`, wantErr: "longer than 15"},
		{name: "bad network name", data: `{"network":"ns/Not_A_Name","interface":"net1"}`, wantErr: "network name"},
		{name: "bad namespace", data: `{"network":"NS!/mv","interface":"net1"}`, wantErr: "namespace"},
		{name: "bad ip", data: `{"network":"mv","interface":"net1","ips":["10.1.0.300"]}`, wantErr: "neither an address nor a CIDR"},
		{name: "bad mac", data: `{"network":"mv","interface":"net1","mac":"zz"}`, wantErr: "MAC"},
		{name: "inline bad ip", data: `{"config":` + macvlan + `,"interface":"net1","ips":["x"]}`, wantErr: "neither an address"},
		{name: "inline not an object", data: `{"config":"macvlan","interface":"net1"}`, wantErr: "want a CNI config object"},
		{name: "inline without name", data: `{"config":{"cniVersion":"1.0.0","type":"macvlan"},"interface":"net1"}`, wantErr: `"name" is required`},
		{name: "inline without type", data: `{"config":{"cniVersion":"1.0.0","name":"x"},"interface":"net1"}`, wantErr: `exactly one of "type"`},
		{name: "inline with type and plugins", data: `{"config":{"cniVersion":"1.0.0","name":"x","type":"a","plugins":[{"type":"b"}]},"interface":"net1"}`, wantErr: `exactly one of "type"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.data), "ns", "claim")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse: error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got.Namespace != tt.want.Namespace || got.Network != tt.want.Network || got.Interface != tt.want.Interface {
				t.Fatalf("Parse = %s/%s@%s, want %s/%s@%s", got.Namespace, got.Network, got.Interface, tt.want.Namespace, tt.want.Network, tt.want.Interface)
			}
			if got.NAD() == strings.Contains(tt.data, `"config"`) {
				t.Fatalf("NAD() = %v for %s", got.NAD(), tt.data)
			}
			if p := got.Planner(); p.Source != "claim" {
				t.Fatalf("Planner().Source = %q", p.Source)
			}
		})
	}
}

func TestForDevice(t *testing.T) {
	opaque := func(driver string, requests []string, data string) resourceapi.DeviceAllocationConfiguration {
		return resourceapi.DeviceAllocationConfiguration{Source: resourceapi.AllocationConfigSourceClaim, Requests: requests,
			DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
				Driver: driver, Parameters: runtime.RawExtension{Raw: []byte(data)}}}}
	}
	claim := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"},
		Status: resourceapi.ResourceClaimStatus{Allocation: &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{
			Config: []resourceapi.DeviceAllocationConfiguration{
				opaque(DriverName, nil, `{"network":"class-default","interface":"net1"}`),
				opaque("other.io", nil, `{"whatever":true}`),
				opaque(DriverName, []string{"b"}, `{"network":"mv-b","interface":"net2"}`),
				opaque(DriverName, []string{"bad"}, `{"network":"mv","interface":"net/2"}`),
			}}}}}
	for _, tt := range []struct{ request, network, wantErr string }{
		{request: "a", network: "class-default"},
		{request: "b", network: "mv-b"},
		{request: "b/sub", network: "mv-b"},
		{request: "bad", wantErr: `request "bad"`},
	} {
		got, err := ForDevice(claim, resourceapi.DeviceRequestAllocationResult{Request: tt.request, Driver: DriverName})
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want %q", tt.request, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.Network != tt.network {
			t.Errorf("%s: %+v %v, want network %s", tt.request, got, err, tt.network)
		}
	}
	claim.Status.Allocation.Devices.Config = nil
	if _, err := ForDevice(claim, resourceapi.DeviceRequestAllocationResult{Request: "a"}); err == nil || !strings.Contains(err.Error(), "no netplug.io configuration") {
		t.Errorf("no config: %v", err)
	}
}

func TestForNIC(t *testing.T) {
	claim := func(cfg string) *resourceapi.ResourceClaim {
		c := &resourceapi.ResourceClaim{Status: resourceapi.ResourceClaimStatus{Allocation: &resourceapi.AllocationResult{}}}
		if cfg != "" {
			c.Status.Allocation.Devices.Config = []resourceapi.DeviceAllocationConfiguration{{Requests: []string{"nic"},
				DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
					Driver: DriverName, Parameters: runtime.RawExtension{Raw: []byte(cfg)}}}}}
		}
		return c
	}
	res := resourceapi.DeviceRequestAllocationResult{Request: "nic", Driver: DriverName, Pool: "n/nic", Device: "nic-npdev30"}
	for cfg, want := range map[string]string{"": "", `{}`: "", `{"interface":"net1"}`: "net1"} {
		if got, err := ForNIC(claim(cfg), res); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", cfg, got, err, want)
		}
	}
	for cfg, want := range map[string]string{
		`{"interface":"net1","network":"mv"}`:    `unknown field "network"`,
		`{"interface":"net1","ips":["1.2.3.4"]}`: `unknown field "ips"`,
		`{"interface":"net/1"}`:                  "not allowed",
		`{"interface":"net1"} {}`:                "after the JSON object",
	} {
		if _, err := ForNIC(claim(cfg), res); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", cfg, err, want)
		}
	}
	if _, err := ForNIC(&resourceapi.ResourceClaim{}, res); err == nil {
		t.Error("an unallocated claim")
	}
}
