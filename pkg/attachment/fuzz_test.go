package attachment

import "testing"

// FuzzParseSelection: whatever the annotation, parsing never panics, every accepted element
// is valid, named interfaces are unique, and naming yields unique, valid interface names.
func FuzzParseSelection(f *testing.F) {
	for _, seed := range []string{
		"", "a", "a,b@net1", "ns/a@eth1, b", "[]", "[null]", `[{"name":"a"}]`,
		`[{"name":"a","interface":"net1","ips":["10.0.0.1/24"],"mac":"02:00:00:00:00:01","cni-args":{"x":1}},{"name":"a"}]`,
		`[{"name":"a","interface":"net1"},{"name":"b","interface":"net1"}]`, `{"name":1}`, "a/b/c", "@", ",,",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, annotation string) {
		sel, err := ParseSelection(annotation, "ns")
		if err != nil {
			if len(sel.Attachments) != 0 || len(sel.Problems) != 0 {
				t.Fatalf("error %v came with a partial selection", err)
			}
			return
		}
		named := map[string]bool{}
		for _, a := range sel.Attachments {
			if reason, err := validateElement(a); err != nil {
				t.Fatalf("accepted invalid element %+v: %s %v", a, reason, err)
			}
			if a.Interface != "" {
				if named[a.Interface] {
					t.Fatalf("interface %q accepted twice", a.Interface)
				}
				named[a.Interface] = true
			}
		}
		seen := map[string]bool{}
		for _, a := range AssignInterfaces(sel.Attachments, nil) {
			if err := ValidateInterfaceName(a.Interface); err != nil {
				t.Fatalf("assigned invalid interface: %v", err)
			}
			if seen[a.Interface] {
				t.Fatalf("interface %q assigned twice", a.Interface)
			}
			seen[a.Interface] = true
		}
	})
}
