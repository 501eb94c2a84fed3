package devices

import (
	"strings"
	"testing"
)

func TestParsePools(t *testing.T) {
	pools, err := ParsePools([]byte(`[
		{"resourceName":"netplug.io/veth","interfacePrefix":"npdev"},
		{"resourceName":"netplug.io/virtio","driver":"virtio_net"},
		{"resourceName":"example.com/nic","pciAddresses":["0000:00:05.0","0000:00:06.1"]},
		{"resourceName":"netplug.io/tun","charDevices":["/dev/net/tun"],"shares":10}]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(pools) != 4 || pools[0].Name() != "veth" || pools[3].Kind() != KindChar || pools[0].Kind() != KindNIC || pools[3].Shares != 10 {
		t.Fatalf("pools = %+v", pools)
	}
	for i, want := range []string{"interfacePrefix", "driver", "pciAddresses", "charDevices"} {
		if got := pools[i].Matcher(); got != want {
			t.Errorf("Matcher(%d) = %q, want %q", i, got, want)
		}
	}
	if NetworkName(pools[0]) != "netplug-veth" {
		t.Errorf("NetworkName = %q", NetworkName(pools[0]))
	}
	p, err := ParsePools([]byte(`[{"resourceName":"netplug.io/kvm","charDevices":["/dev/kvm"]}]`))
	if err != nil || p[0].Shares != 1 {
		t.Fatalf("default shares: %+v %v", p, err)
	}
	p, err = ParsePools([]byte(`[{"resourceName":"netplug.io/nic","pciAddresses":["0000:00:0A.0"]}]`))
	if err != nil || p[0].PCIAddresses[0] != "0000:00:0a.0" {
		t.Fatalf("PCI case: %+v %v", p, err)
	}
}

func TestParsePoolsErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"not a list", `{}`, "want a list"},
		{"not an object", `[1]`, "pool 0: want an object"},
		{"unknown matcher", `[{"resourceName":"netplug.io/a","interfaceRegex":"x"}]`, `unknown field "interfaceRegex"`},
		{"bad type", `[{"resourceName":"netplug.io/a","driver":1}]`, "pool 0"},
		{"no matcher", `[{"resourceName":"netplug.io/a"}]`, "exactly one matcher"},
		{"two matchers", `[{"resourceName":"netplug.io/a","driver":"veth","interfacePrefix":"x"}]`, "got 2"},
		{"no domain", `[{"resourceName":"veth","driver":"veth"}]`, "want <domain>/<name>"},
		{"empty domain", `[{"resourceName":"/veth","driver":"veth"}]`, "want <domain>/<name>"},
		{"bad qualified", `[{"resourceName":"netplug.io/a_b$","driver":"veth"}]`, "resourceName"},
		{"reserved", `[{"resourceName":"kubernetes.io/a","driver":"veth"}]`, "reserved"},
		{"reserved k8s", `[{"resourceName":"foo.k8s.io/a","driver":"veth"}]`, "reserved"},
		{"name not a label", `[{"resourceName":"netplug.io/A.b","driver":"veth"}]`, "name part"},
		{"long name", `[{"resourceName":"netplug.io/` + strings.Repeat("a", 58) + `","driver":"veth"}]`, "too long"},
		{"bad prefix", `[{"resourceName":"netplug.io/a","interfacePrefix":"a/b"}]`, "cannot begin a link name"},
		{"bad driver", `[{"resourceName":"netplug.io/a","driver":"a b"}]`, "not a kernel driver"},
		{"bad pci", `[{"resourceName":"netplug.io/a","pciAddresses":["00:05.0"]}]`, "not a PCI address"},
		{"bad char", `[{"resourceName":"netplug.io/a","charDevices":["dev/kvm"]}]`, "under /dev"},
		{"char outside dev", `[{"resourceName":"netplug.io/a","charDevices":["/etc/passwd"]}]`, "under /dev"},
		{"shares on nic", `[{"resourceName":"netplug.io/a","driver":"veth","shares":2}]`, "charDevices pools only"},
		{"shares range", `[{"resourceName":"netplug.io/a","charDevices":["/dev/kvm"],"shares":1001}]`, "1..1000"},
		{"same name", `[{"resourceName":"netplug.io/a","driver":"veth"},{"resourceName":"example.com/a","driver":"virtio_net"}]`, `both are named "a"`},
		{"prefix overlap", `[{"resourceName":"netplug.io/a","interfacePrefix":"np"},{"resourceName":"netplug.io/b","interfacePrefix":"npdev"}]`, `prefixes "np" and "npdev"`},
		{"driver overlap", `[{"resourceName":"netplug.io/a","driver":"veth"},{"resourceName":"netplug.io/b","driver":"veth"}]`, "both match driver veth"},
		{"pci overlap", `[{"resourceName":"netplug.io/a","pciAddresses":["0000:00:05.0"]},{"resourceName":"netplug.io/b","pciAddresses":["0000:00:05.0"]}]`, "PCI address 0000:00:05.0"},
		{"char overlap", `[{"resourceName":"netplug.io/a","charDevices":["/dev/net/tun"]},{"resourceName":"netplug.io/b","charDevices":["/dev/net/tun"]}]`, "device /dev/net/tun"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePools([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
