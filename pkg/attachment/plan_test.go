package attachment

import (
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"slices"
	"testing"
)

func desired(t *testing.T, annotation string) []Attachment {
	t.Helper()
	sel, err := ParseSelection(annotation, "ns")
	if err != nil || len(sel.Problems) > 0 {
		t.Fatalf("ParseSelection(%s): %v %v", annotation, err, sel.Problems)
	}
	return sel.Attachments
}

// attached turns named desired attachments into what Current reports once they are plugged
// by netplug (records known, confirmed).
func attached(as []Attachment) []Attachment {
	out := slices.Clone(as)
	for i := range out {
		out[i].Index, out[i].Confirmed, out[i].AttributesKnown, out[i].Managed = -1, true, true, true
	}
	return out
}

func keys(as []Attachment) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Key())
	}
	return out
}

func TestAssignInterfaces(t *testing.T) {
	tests := []struct {
		name       string
		annotation string
		current    []Attachment
		want       []string
	}{
		{name: "lowest free netN", annotation: "a,b@net1,c", want: []string{"ns/a/net2", "ns/b/net1", "ns/c/net3"}},
		{name: "skips names current attachments use", annotation: "a",
			current: []Attachment{{Namespace: "ns", Network: "z", Interface: "net1", Confirmed: true}},
			want:    []string{"ns/a/net2"}},
		{name: "keeps the interface of a current attachment of the same network", annotation: "a",
			current: []Attachment{{Namespace: "ns", Network: "a", Interface: "net4", Confirmed: true, AttributesKnown: true}},
			want:    []string{"ns/a/net4"}},
		{name: "a named element wins the interface over an unnamed one", annotation: "a,a@net4",
			current: []Attachment{{Namespace: "ns", Network: "a", Interface: "net4", Confirmed: true, AttributesKnown: true}},
			want:    []string{"ns/a/net1", "ns/a/net4"}},
		{name: "same attributes match first, so removing one of two keeps the other's interface",
			annotation: `[{"name":"a","ips":["10.0.0.2/24"]}]`,
			current: []Attachment{
				{Namespace: "ns", Network: "a", Interface: "net1", Attributes: Attributes{IPs: []string{"10.0.0.1/24"}}, AttributesKnown: true, Confirmed: true},
				{Namespace: "ns", Network: "a", Interface: "net2", Attributes: Attributes{IPs: []string{"10.0.0.2/24"}}, AttributesKnown: true, Confirmed: true}},
			want: []string{"ns/a/net2"}},
		{name: "never adopts an interface the user named", annotation: "a",
			current: []Attachment{{Namespace: "ns", Network: "a", Interface: "sa", Confirmed: true, AttributesKnown: true}},
			want:    []string{"ns/a/net1"}},
		{name: "adopts only netN names, not look-alikes", annotation: "a,a,a",
			current: []Attachment{
				{Namespace: "ns", Network: "a", Interface: "net01", Confirmed: true},
				{Namespace: "ns", Network: "a", Interface: "netx", Confirmed: true},
				{Namespace: "ns", Network: "a", Interface: "net", Confirmed: true},
				{Namespace: "ns", Network: "a", Interface: "net7", Confirmed: true}},
			want: []string{"ns/a/net7", "ns/a/net1", "ns/a/net2"}},
		{name: "changed attributes still keep the interface (a replug)", annotation: `[{"name":"a","ips":["10.0.0.9/24"]}]`,
			current: []Attachment{{Namespace: "ns", Network: "a", Interface: "net1", Attributes: Attributes{IPs: []string{"10.0.0.1/24"}}, AttributesKnown: true, Confirmed: true}},
			want:    []string{"ns/a/net1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := keys(AssignInterfaces(desired(t, tt.annotation), tt.current))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// An unnamed element maps to the same interface on every reconcile, and unplugging another
// element does not move it.
func TestAssignInterfacesStableAcrossReconciles(t *testing.T) {
	annotation := "a,b,c"
	var current []Attachment
	var first []string
	for round := 0; round < 3; round++ {
		named := AssignInterfaces(desired(t, annotation), current)
		plan := Diff(named, current, nil, false)
		if round == 0 {
			first = keys(named)
			if len(plan.Adds) != 3 {
				t.Fatalf("round 0: plan %+v, want 3 adds", plan)
			}
		} else if !plan.Empty() {
			t.Fatalf("round %d: plan %+v, want empty", round, plan)
		}
		if got := keys(named); !slices.Equal(got, first) {
			t.Fatalf("round %d: %v, want %v", round, got, first)
		}
		current = attached(named)
	}
	// Remove "a": b and c keep net2 and net3, net1 is unplugged.
	named := AssignInterfaces(desired(t, "b,c"), current)
	if got := keys(named); !slices.Equal(got, []string{"ns/b/net2", "ns/c/net3"}) {
		t.Fatalf("after removing a: %v", got)
	}
	plan := Diff(named, current, nil, false)
	if len(plan.Adds) != 0 || len(plan.Replugs) != 0 || !slices.Equal(keys(plan.Removes), []string{"ns/a/net1"}) {
		t.Fatalf("after removing a: plan %+v", plan)
	}
}

func TestDiff(t *testing.T) {
	br1 := Attachment{Namespace: "ns", Network: "br", Interface: "net1", Confirmed: true, AttributesKnown: true, Managed: true}
	mv2 := Attachment{Namespace: "ns", Network: "mv", Interface: "net2", Confirmed: true, AttributesKnown: true, Managed: true}
	withIP := func(a Attachment, ip string) Attachment { a.Attributes.IPs = []string{ip}; return a }
	observed := func(a Attachment, ips []string, mac string) Attachment {
		a.AttributesKnown, a.Managed, a.ObservedIPs, a.ObservedMAC = false, false, ips, mac
		return a
	}
	withMAC := func(a Attachment, mac string) Attachment { a.Attributes.MAC = mac; return a }
	eth0 := map[string]bool{"eth0": true}
	tests := []struct {
		name                   string
		desired, current       []Attachment
		defaults               map[string]bool
		hold                   bool
		adds, removes, replugs []string // keys; replugs by new key
		adopts, refused        []string
	}{
		{name: "nothing to do", desired: []Attachment{br1}, current: []Attachment{br1}},
		{name: "add", desired: []Attachment{br1, mv2}, current: []Attachment{br1}, adds: []string{"ns/mv/net2"}},
		{name: "remove", desired: []Attachment{br1}, current: []Attachment{br1, mv2}, removes: []string{"ns/mv/net2"}},
		{name: "add and remove in one edit", desired: []Attachment{mv2}, current: []Attachment{br1},
			adds: []string{"ns/mv/net2"}, removes: []string{"ns/br/net1"}},
		{name: "removals held while the selection has problems", desired: []Attachment{mv2}, current: []Attachment{br1}, hold: true,
			adds: []string{"ns/mv/net2"}},
		{name: "changed IP is a replug", desired: []Attachment{withIP(br1, "10.0.0.9/24")}, current: []Attachment{withIP(br1, "10.0.0.1/24")},
			replugs: []string{"ns/br/net1"}},
		{name: "other network on the same interface is a replug", desired: []Attachment{{Namespace: "ns", Network: "mv", Interface: "net1"}},
			current: []Attachment{br1}, replugs: []string{"ns/mv/net1"}},
		{name: "unconfirmed record is replugged", desired: []Attachment{br1},
			current: []Attachment{{Namespace: "ns", Network: "br", Interface: "net1", AttributesKnown: true}}, replugs: []string{"ns/br/net1"}},
		{name: "unconfirmed record no longer wanted is removed", current: []Attachment{{Namespace: "ns", Network: "br", Interface: "net1", AttributesKnown: true, Managed: true}},
			removes: []string{"ns/br/net1"}},
		{name: "interrupted DEL, wanted again, is a replug", desired: []Attachment{br1},
			current: []Attachment{func() Attachment { a := br1; a.Uncertain = true; return a }()}, replugs: []string{"ns/br/net1"}},
		{name: "interrupted DEL no longer wanted is removed (DEL again)",
			current: []Attachment{func() Attachment { a := br1; a.Uncertain = true; return a }()}, removes: []string{"ns/br/net1"}},
		{name: "unknown attributes: requested IP present in status is adopted", desired: []Attachment{withIP(br1, "10.0.0.1/24")},
			current: []Attachment{observed(br1, []string{"10.0.0.1"}, "")}, adopts: []string{"ns/br/net1"}},
		{name: "unknown attributes: requested IP absent from status is a replug", desired: []Attachment{withIP(br1, "10.0.0.2/24")},
			current: []Attachment{observed(br1, []string{"10.0.0.1"}, "")}, replugs: []string{"ns/br/net1"}},
		{name: "unknown attributes: requested MAC differs is a replug",
			desired: []Attachment{func() Attachment { a := br1; a.Attributes.MAC = "02:00:00:00:00:02"; return a }()},
			current: []Attachment{observed(br1, nil, "02:00:00:00:00:01")}, replugs: []string{"ns/br/net1"}},
		{name: "unknown attributes: nothing requested is adopted", desired: []Attachment{br1},
			current: []Attachment{observed(br1, []string{"10.0.0.1"}, "02:00:00:00:00:01")}, adopts: []string{"ns/br/net1"}},
		{name: "unknown attributes: the same MAC in another notation is adopted, not replugged",
			desired: []Attachment{withMAC(br1, "02-00-00-00-00-01")},
			current: []Attachment{observed(br1, nil, "02:00:00:00:00:01")}, adopts: []string{"ns/br/net1"}},
		{name: "known attributes: the same MAC in another notation is no change",
			desired: []Attachment{withMAC(br1, "02-00-00-00-00-05")}, current: []Attachment{withMAC(br1, "02:00:00:00:00:05")}},
		{name: "an interface netplug does not manage is never removed", desired: []Attachment{br1},
			current: []Attachment{br1, observed(mv2, nil, "")}},
		{name: "the default network's interface is refused", defaults: eth0,
			desired: []Attachment{{Namespace: "ns", Network: "br", Interface: "eth0"}}, refused: []string{"ns/br/eth0"}},
		{name: "a name in use by an unmanaged attachment of another network is refused",
			desired: []Attachment{{Namespace: "ns", Network: "br", Interface: "net2"}},
			current: []Attachment{observed(mv2, nil, "")}, refused: []string{"ns/br/net2"}},
		{name: "a refused element holds nothing: the managed interface it would replace stays",
			desired: []Attachment{{Namespace: "ns", Network: "br", Interface: "eth0"}}, defaults: eth0,
			current: []Attachment{br1}, refused: []string{"ns/br/eth0"}, removes: []string{"ns/br/net1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Diff(tt.desired, tt.current, tt.defaults, tt.hold)
			var replugs []string
			for _, r := range p.Replugs {
				replugs = append(replugs, r.New.Key())
				if r.Old.Interface != r.New.Interface {
					t.Errorf("replug changes interface: %+v", r)
				}
			}
			if !slices.Equal(keys(p.Adds), tt.adds) || !slices.Equal(keys(p.Removes), tt.removes) || !slices.Equal(replugs, tt.replugs) {
				t.Fatalf("plan adds=%v removes=%v replugs=%v, want %v %v %v", keys(p.Adds), keys(p.Removes), replugs, tt.adds, tt.removes, tt.replugs)
			}
			var refused []string
			for _, r := range p.Refused {
				refused = append(refused, r.Attachment.Key())
				if r.Reason != ReasonInterfaceInUse || r.Message == "" {
					t.Errorf("refusal %+v", r)
				}
			}
			if !slices.Equal(keys(p.Adopts), tt.adopts) || !slices.Equal(refused, tt.refused) {
				t.Fatalf("plan adopts=%v refused=%v, want %v %v", keys(p.Adopts), refused, tt.adopts, tt.refused)
			}
			if p.Empty() != (len(tt.adds)+len(tt.removes)+len(tt.replugs)+len(tt.adopts) == 0) {
				t.Errorf("Empty() = %v", p.Empty())
			}
		})
	}
}

func TestSameAddress(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"10.0.0.1/24", "10.0.0.1", true}, {"10.0.0.1", "10.0.0.1", true}, {"fd00::1/64", "fd00:0::1", true},
		{"10.0.0.1", "10.0.0.2", false}, {"garbage", "10.0.0.1", false},
	} {
		if got := sameAddress(tt.a, tt.b); got != tt.want {
			t.Errorf("sameAddress(%s, %s) = %v", tt.a, tt.b, got)
		}
	}
}

func TestPlanWithDevices(t *testing.T) {
	dev := Attachment{Namespace: "netplug.io", Network: "veth", Interface: "npdev1", Index: -1, Source: SourceDevice, AttributesKnown: true, Confirmed: true}
	sel := Selection{Attachments: []Attachment{
		{Namespace: "default", Network: "a", Interface: "npdev1", Source: SourceAnnotation, AttributesKnown: true, Confirmed: true},
		{Namespace: "default", Network: "b", Source: SourceAnnotation, AttributesKnown: true, Confirmed: true},
	}}
	p := PlanWith(sel, []Attachment{dev}, nil, nil)
	if len(p.Adds) != 2 || p.Adds[1].Interface != "npdev1" || p.Adds[1].Source != SourceDevice || p.Adds[0].Interface != "net1" {
		t.Fatalf("adds = %+v", p.Adds)
	}
	if len(p.Refused) != 1 || p.Refused[0].Attachment.Network != "a" {
		t.Fatalf("refused = %+v", p.Refused)
	}
	// Attached and recorded: nothing to do; the selection dropping everything never removes it,
	// and an element taking its name is refused rather than replugged.
	recs := []Record{{Namespace: "netplug.io", Network: "veth", Interface: "npdev1", Source: SourceDevice}}
	status := []nadv1.NetworkStatus{{Name: "netplug.io/veth", Interface: "npdev1"}}
	if p := PlanWith(Selection{}, []Attachment{dev}, status, recs); !p.Empty() {
		t.Fatalf("steady plan = %+v", p)
	}
	if p := PlanWith(Selection{}, nil, status, recs); len(p.Removes) != 0 {
		t.Fatalf("removes = %+v", p.Removes)
	}
	p = PlanWith(Selection{Attachments: sel.Attachments[:1]}, nil, status, recs)
	if len(p.Replugs)+len(p.Removes)+len(p.Adds) != 0 || len(p.Refused) != 1 {
		t.Fatalf("annotation over a device = %+v", p)
	}
}
