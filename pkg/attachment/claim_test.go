package attachment

import (
	"testing"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
)

// A DRA claim's interface is in network-status and in netplug's records (Origin "claim"), but
// the annotation path owns none of it: an empty selection removes nothing, an element of the
// same network is neither adopted nor replugged into it, and an unnamed element gets another name.
func TestClaimBackedInterfacesAreNeverTheAnnotationsToChange(t *testing.T) {
	status := []nadv1.NetworkStatus{
		{Name: "kindnet", Interface: "eth0", Default: true},
		{Name: "ns/macvlan", Interface: "net1", IPs: []string{"10.1.0.5"}},
		{Name: "ns/macvlan", Interface: "net9"}, // a record in flight, confirmed by status
	}
	claimRecords := []Record{
		{Namespace: "ns", Network: "macvlan", Interface: "net1", ClaimBacked: true},
		{Namespace: "ns", Network: "macvlan", Interface: "net9", ClaimBacked: true, Uncertain: true},
		{Namespace: "ns", Network: "bridge", Interface: "claim0", ClaimBacked: true}, // not in status yet
	}
	tests := []struct {
		name       string
		annotation string
		wantAdds   []string
		wantRefuse []string
	}{
		{name: "empty selection removes nothing", annotation: ""},
		{name: "same network, same interface is refused, not adopted", annotation: `[{"name":"macvlan","interface":"net1"}]`, wantRefuse: []string{"ns/macvlan/net1"}},
		{name: "uncertain claim interface is not replugged", annotation: `[{"name":"macvlan","interface":"net9","ips":["10.1.0.9"]}]`, wantRefuse: []string{"ns/macvlan/net9"}},
		{name: "claim interface not yet in status is refused", annotation: `[{"name":"bridge","interface":"claim0"}]`, wantRefuse: []string{"ns/bridge/claim0"}},
		{name: "unnamed element takes a free name", annotation: `macvlan`, wantAdds: []string{"ns/macvlan/net2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := ParseSelection(tt.annotation, "ns")
			if err != nil {
				t.Fatal(err)
			}
			p := PlanFor(sel, status, claimRecords)
			if len(p.Removes)+len(p.Replugs)+len(p.Adopts) != 0 {
				t.Fatalf("plan touches a claim's interface: removes %v replugs %v adopts %v", keys(p.Removes), p.Replugs, keys(p.Adopts))
			}
			if got := keys(p.Adds); !equalStrings(got, tt.wantAdds) {
				t.Errorf("adds = %v, want %v", got, tt.wantAdds)
			}
			var refused []string
			for _, r := range p.Refused {
				refused = append(refused, r.Attachment.Key())
				if r.Reason != ReasonInterfaceInUse {
					t.Errorf("refusal reason %q, want %q", r.Reason, ReasonInterfaceInUse)
				}
			}
			if !equalStrings(refused, tt.wantRefuse) {
				t.Errorf("refused = %v, want %v", refused, tt.wantRefuse)
			}
		})
	}
	for _, c := range Current(status, claimRecords) {
		if c.Managed || !c.ClaimBacked {
			t.Errorf("Current: %s managed=%v claimBacked=%v, want unmanaged and claim-backed", c.Key(), c.Managed, c.ClaimBacked)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
