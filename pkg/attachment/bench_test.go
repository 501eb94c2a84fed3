package attachment

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkReconcilePlan measures what every reconcile of a pod with K secondary networks
// costs before any I/O: parse the annotation and network-status, name, diff.
func BenchmarkReconcilePlan(b *testing.B) {
	for _, k := range []int{2, 8, 32} {
		var sel, status []string
		for i := 1; i <= k; i++ {
			sel = append(sel, fmt.Sprintf(`{"name":"net-%d","ips":["10.%d.0.5/24"]}`, i, i))
			status = append(status, fmt.Sprintf(`{"name":"ns/net-%d","interface":"net%d","ips":["10.%d.0.5"],"mac":"02:00:00:00:00:%02x"}`, i, i, i, i))
		}
		annotation := "[" + strings.Join(sel, ",") + "]"
		networkStatus := `[{"name":"podnet","interface":"eth0","default":true},` + strings.Join(status, ",") + "]"
		b.Run(fmt.Sprintf("networks=%d", k), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s, err := ParseSelection(annotation, "ns")
				if err != nil {
					b.Fatal(err)
				}
				entries, err := ParseNetworkStatus(networkStatus)
				if err != nil {
					b.Fatal(err)
				}
				current := Current(entries, nil)
				if p := Diff(AssignInterfaces(s.Attachments, current), current, nil, false); !p.Empty() {
					b.Fatalf("converged pod has a plan: %+v", p)
				}
			}
		})
	}
}
