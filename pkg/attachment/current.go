package attachment

import (
	"encoding/json"
	"fmt"
	"strings"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
)

// Record is what netplug remembers about an interface it plugged: the attributes it asked for.
// It is written before the ADD, so a record may exist for an interface that never made it
// into network-status.
type Record struct {
	Namespace  string
	Network    string
	Interface  string
	Attributes Attributes
	// Uncertain: an ADD or DEL of the interface was started and its outcome not recorded.
	Uncertain bool
	// Source is who asked for the interface ("" is the annotation).
	Source Source
	// ClaimBacked: a DRA ResourceClaim asked for the interface (checkpoint Origin "claim"). The
	// annotation path never manages it.
	ClaimBacked bool
}

// ParseNetworkStatus parses the value of k8s.v1.cni.cncf.io/network-status; "" is no entries.
func ParseNetworkStatus(annotation string) ([]nadv1.NetworkStatus, error) {
	if strings.TrimSpace(annotation) == "" {
		return nil, nil
	}
	var entries []nadv1.NetworkStatus
	if err := json.Unmarshal([]byte(annotation), &entries); err != nil {
		return nil, fmt.Errorf("malformed network-status annotation: %w", err)
	}
	return entries, nil
}

// DefaultInterfaces lists the interfaces of the pod's default network in network-status: they
// are never netplug's, and a selection element that names one is refused.
func DefaultInterfaces(status []nadv1.NetworkStatus) map[string]bool {
	out := map[string]bool{}
	for _, s := range status {
		if s.Default && s.Interface != "" {
			out[s.Interface] = true
		}
	}
	return out
}

// Current lists the secondary attachments a pod has: every non-default network-status entry
// with a "namespace/name" network and an interface, enriched with netplug's records, plus the
// records that never reached network-status (Confirmed false). Records are never older than
// network-status: where they disagree on an interface's network, the record wins, uncertain.
func Current(status []nadv1.NetworkStatus, records []Record) []Attachment {
	byInterface := make(map[string]Record, len(records))
	for _, r := range records {
		byInterface[r.Interface] = r
	}
	var out []Attachment
	seen := map[string]bool{}
	for _, s := range status {
		ns, name, ok := strings.Cut(s.Name, "/")
		if s.Default || !ok || s.Interface == "" || seen[s.Interface] {
			continue
		}
		seen[s.Interface] = true
		a := Attachment{
			Namespace: ns, Network: name, Interface: s.Interface, Index: -1,
			ObservedIPs: s.IPs, ObservedMAC: s.Mac, Confirmed: true,
		}
		if r, ok := byInterface[s.Interface]; ok && r.ClaimBacked {
			a.Attributes, a.AttributesKnown, a.Uncertain, a.ClaimBacked, a.Source = r.Attributes, true, r.Uncertain, true, r.Source
		} else if ok {
			a.Attributes, a.AttributesKnown, a.Uncertain, a.Managed, a.Source = r.Attributes, true, r.Uncertain, true, r.Source
			if r.Namespace != ns || r.Network != name {
				// The record is newer than the entry (it is written before every ADD, and a
				// replug only ADDs after the old network's DEL succeeded): the status write of
				// that replug never happened. The interface is the record's network, or none.
				a.Namespace, a.Network, a.ObservedIPs, a.ObservedMAC, a.Uncertain = r.Namespace, r.Network, nil, "", true
			}
		}
		out = append(out, a)
	}
	for _, r := range records {
		if seen[r.Interface] {
			continue
		}
		seen[r.Interface] = true
		out = append(out, Attachment{
			Namespace: r.Namespace, Network: r.Network, Interface: r.Interface, Index: -1,
			Attributes: r.Attributes, AttributesKnown: true, Uncertain: r.Uncertain,
			Managed: !r.ClaimBacked, ClaimBacked: r.ClaimBacked, Source: r.Source,
		})
	}
	return out
}
