package attachment

import (
	"testing"
)

func TestParseNetworkStatus(t *testing.T) {
	if got, err := ParseNetworkStatus(""); err != nil || got != nil {
		t.Fatalf("empty: got %v, %v", got, err)
	}
	if _, err := ParseNetworkStatus("[{"); err == nil {
		t.Fatal("malformed network-status must be an error")
	}
	got, err := ParseNetworkStatus(`[{"name":"podnet","interface":"eth0","default":true},{"name":"ns/br","interface":"net1","ips":["10.0.0.2"],"mac":"02:00:00:00:00:01"}]`)
	if err != nil || len(got) != 2 || got[1].Interface != "net1" || got[1].Mac != "02:00:00:00:00:01" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestCurrent(t *testing.T) {
	status, err := ParseNetworkStatus(`[
		{"name":"podnet","interface":"eth0","default":true},
		{"name":"ns/br","interface":"net1","ips":["10.0.0.2"],"mac":"02:00:00:00:00:01"},
		{"name":"ns/mv","interface":"net2"},
		{"name":"no-namespace","interface":"net3"},
		{"name":"ns/nointerface"},
		{"name":"ns/br","interface":"net6"},
		{"name":"ns/br","interface":"net1"},
		{"name":"ns/br","interface":"net8","ips":["10.0.0.8"],"mac":"02:00:00:00:00:08"}]`)
	if err != nil {
		t.Fatal(err)
	}
	records := []Record{
		{Namespace: "ns", Network: "mv", Interface: "net2", Attributes: Attributes{MAC: "02:00:00:00:00:09"}},
		{Namespace: "ns", Network: "other", Interface: "net1"}, // a replug to other whose status write never happened
		{Namespace: "ns", Network: "br", Interface: "net5", Attributes: Attributes{IPs: []string{"10.0.0.5/24"}}},
		{Namespace: "ns", Network: "br", Interface: "net6", Uncertain: true},
		{Namespace: "ns", Network: "br", Interface: "net7", Uncertain: true},
	}
	got := Current(status, records)
	want := []struct {
		key                  string
		known, confirmed     bool
		uncertain            bool
		mac                  string
		observedIPs, observe int
	}{
		{key: "ns/other/net1", known: true, confirmed: true, uncertain: true},
		{key: "ns/mv/net2", known: true, confirmed: true, mac: "02:00:00:00:00:09"},
		{key: "ns/br/net6", known: true, confirmed: true, uncertain: true},
		{key: "ns/br/net8", known: false, confirmed: true},
		{key: "ns/br/net5", known: true, confirmed: false},
		{key: "ns/br/net7", known: true, confirmed: false, uncertain: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d attachments %+v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Key() != w.key || g.AttributesKnown != w.known || g.Confirmed != w.confirmed || g.Attributes.MAC != w.mac ||
			g.Uncertain != w.uncertain {
			t.Errorf("attachment %d = %+v, want %+v", i, g, w)
		}
		if g.Index != -1 {
			t.Errorf("current attachment %d has index %d, want -1", i, g.Index)
		}
	}
	if got[0].ObservedMAC != "" || len(got[0].ObservedIPs) != 0 {
		t.Errorf("the superseded entry's observed state was carried: %+v", got[0])
	}
	if got[3].ObservedMAC != "02:00:00:00:00:08" || len(got[3].ObservedIPs) != 1 {
		t.Errorf("observed state not carried: %+v", got[3])
	}
}
