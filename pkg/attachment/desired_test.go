package attachment

import (
	"strings"
	"testing"
)

func TestParseSelection(t *testing.T) {
	tests := []struct {
		name       string
		annotation string
		want       []Attachment // only Namespace, Network, Interface, Attributes are compared
		problems   []string     // reasons, in order
		messages   []string     // substrings of the problems' messages, in order
		wantErr    string
	}{
		{name: "empty means no networks", annotation: "  "},
		{name: "empty JSON list", annotation: "[]"},
		{name: "comma form with defaults and namespaces", annotation: "a, other/b@eth7,c@net3",
			want: []Attachment{{Namespace: "pod-ns", Network: "a"}, {Namespace: "other", Network: "b", Interface: "eth7"},
				{Namespace: "pod-ns", Network: "c", Interface: "net3"}}},
		{name: "JSON form with attributes", annotation: `[{"name":"br","namespace":"x","interface":"net2","ips":["10.1.1.5/24"],"mac":"02:00:00:00:00:01","cni-args":{"k":"v"}},{"name":"mv"}]`,
			want: []Attachment{
				{Namespace: "x", Network: "br", Interface: "net2", Attributes: Attributes{IPs: []string{"10.1.1.5/24"}, MAC: "02:00:00:00:00:01", CNIArgs: map[string]interface{}{"k": "v"}}},
				{Namespace: "pod-ns", Network: "mv"}}},
		{name: "malformed JSON", annotation: `[{"name":`, wantErr: "malformed network selection annotation"},
		{name: "JSON object instead of list", annotation: `{"name":"a"}`, wantErr: "malformed"},
		{name: "null element", annotation: `[null]`, wantErr: "element 0 is null"},
		{name: "comma form with too many slashes", annotation: "a/b/c", wantErr: "malformed"},
		{name: "comma form with upper case", annotation: "Net", wantErr: "malformed"},
		{name: "invalid interface names are problems, not errors", annotation: `[{"name":"a","interface":"a/b"},{"name":"b","interface":"0123456789abcdef"},{"name":"c","interface":".."},{"name":"d","interface":"x y"},{"name":"e","interface":"ok1"}]`,
			want:     []Attachment{{Namespace: "pod-ns", Network: "e", Interface: "ok1"}},
			problems: []string{ReasonInvalidInterface, ReasonInvalidInterface, ReasonInvalidInterface, ReasonInvalidInterface}},
		{name: "duplicate interface fails the second element", annotation: `[{"name":"a","interface":"net1"},{"name":"b","interface":"net1"}]`,
			want:     []Attachment{{Namespace: "pod-ns", Network: "a", Interface: "net1"}},
			problems: []string{ReasonDuplicateInterface}},
		{name: "invalid network references", annotation: `[{"name":"","namespace":"x"},{"name":"a","namespace":"Bad_NS"},{"name":"../etc"}]`,
			problems: []string{ReasonInvalidNetworkRef, ReasonInvalidNetworkRef, ReasonInvalidNetworkRef}},
		{name: "invalid IP and MAC", annotation: `[{"name":"a","ips":["10.0.0.300"]},{"name":"b","mac":"zz"},{"name":"c","ips":["fd00::5/64","10.0.0.1"]}]`,
			want:     []Attachment{{Namespace: "pod-ns", Network: "c", Attributes: Attributes{IPs: []string{"fd00::5/64", "10.0.0.1"}}}},
			problems: []string{ReasonInvalidAttributes, ReasonInvalidAttributes}},
		{name: "every field hot-plug cannot carry out is a problem that names it",
			annotation: `[{"name":"a","default-route":["10.231.0.1"]},{"name":"b","portMappings":[{"hostPort":8080,"containerPort":80}]},` +
				`{"name":"c","bandwidth":{"ingressRate":1}},{"name":"d","infiniband-guid":"x"},{"name":"e","ipam-claim-reference":"claim"},` +
				`{"name":"f","deviceID":"0000:00:05.0"},{"name":"g","iface":"net1"},{"name":"ok","namespace":"x","interface":"net9","ips":["10.0.0.1/24"],"mac":"02:00:00:00:00:01","cni-args":{}}]`,
			want: []Attachment{{Namespace: "x", Network: "ok", Interface: "net9", Attributes: Attributes{IPs: []string{"10.0.0.1/24"}, MAC: "02:00:00:00:00:01"}}},
			problems: []string{ReasonUnsupportedField, ReasonUnsupportedField, ReasonUnsupportedField, ReasonUnsupportedField,
				ReasonUnsupportedField, ReasonUnsupportedField, ReasonUnsupportedField},
			messages: []string{`"default-route"`, `"portMappings"`, `"bandwidth"`, `"infiniband-guid"`, `"ipam-claim-reference"`, `"deviceID"`, `unknown field "iface"`}},
		{name: "JSON form over the cap", annotation: "[" + strings.Repeat(`{"name":"a"},`, DefaultMaxElements) + `{"name":"a"}]`,
			wantErr: "at most 32"},
		{name: "comma form over the cap is refused before it is parsed", annotation: strings.Repeat("a,", 50000) + "a",
			wantErr: "50001 elements"},
		{name: "exactly the cap is fine", annotation: strings.TrimSuffix(strings.Repeat("a,", DefaultMaxElements), ","),
			want: func() []Attachment {
				var out []Attachment
				for i := 0; i < DefaultMaxElements; i++ {
					out = append(out, Attachment{Namespace: "pod-ns", Network: "a"})
				}
				return out
			}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := ParseSelection(tt.annotation, "pod-ns")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if len(sel.Attachments) != len(tt.want) {
				t.Fatalf("got %d attachments %v, want %d", len(sel.Attachments), sel.Attachments, len(tt.want))
			}
			for i, w := range tt.want {
				g := sel.Attachments[i]
				if g.Namespace != w.Namespace || g.Network != w.Network || g.Interface != w.Interface || !g.Attributes.Equal(w.Attributes) {
					t.Errorf("attachment %d = %+v, want %+v", i, g, w)
				}
				if !g.AttributesKnown || !g.Confirmed {
					t.Errorf("desired attachment %d must be known and confirmed", i)
				}
			}
			if len(sel.Problems) != len(tt.problems) {
				t.Fatalf("problems = %v, want reasons %v", sel.Problems, tt.problems)
			}
			for i, r := range tt.problems {
				if sel.Problems[i].Reason != r {
					t.Errorf("problem %d reason = %s, want %s (%v)", i, sel.Problems[i].Reason, r, sel.Problems[i])
				}
				if sel.Problems[i].Error() == "" || sel.Problems[i].Message == "" {
					t.Errorf("problem %d has no message", i)
				}
				if i < len(tt.messages) && !strings.Contains(sel.Problems[i].Message, tt.messages[i]) {
					t.Errorf("problem %d message %q does not name %s", i, sel.Problems[i].Message, tt.messages[i])
				}
			}
		})
	}
}

func TestValidateInterfaceName(t *testing.T) {
	for name, ok := range map[string]bool{
		"net1": true, "eth0": true, "a": true, "123456789012345": true, "my-if_1.2": true,
		"": false, "1234567890123456": false, ".": false, "..": false, "a/b": false, "a:b": false,
		"a b": false, "a\tb": false, "a\nb": false, "é": false, "a\x00": false, "a\x7f": false,
	} {
		if err := ValidateInterfaceName(name); (err == nil) != ok {
			t.Errorf("ValidateInterfaceName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestAttributesEqual(t *testing.T) {
	tests := []struct {
		name string
		x, y Attributes
		want bool
	}{
		{"both empty", Attributes{}, Attributes{CNIArgs: map[string]interface{}{}}, true},
		{"IP order ignored", Attributes{IPs: []string{"a", "b"}}, Attributes{IPs: []string{"b", "a"}}, true},
		{"MAC case ignored", Attributes{MAC: "02:AA:00:00:00:01"}, Attributes{MAC: "02:aa:00:00:00:01"}, true},
		{"IP differs", Attributes{IPs: []string{"a"}}, Attributes{IPs: []string{"b"}}, false},
		{"MAC differs", Attributes{MAC: "02:00:00:00:00:01"}, Attributes{MAC: "02:00:00:00:00:02"}, false},
		{"cni-args differ", Attributes{CNIArgs: map[string]interface{}{"a": "1"}}, Attributes{CNIArgs: map[string]interface{}{"a": "2"}}, false},
		{"cni-args added", Attributes{}, Attributes{CNIArgs: map[string]interface{}{"a": "1"}}, false},
	}
	for _, tt := range tests {
		if got := tt.x.Equal(tt.y); got != tt.want {
			t.Errorf("%s: Equal = %v, want %v", tt.name, got, tt.want)
		}
	}
}
