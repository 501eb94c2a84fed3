package cli

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func TestPodStatus(t *testing.T) {
	at := func(sec int) time.Time { return time.Date(2026, 12, 1, 10, 0, sec, 0, time.UTC) }
	st := func(network, iface string, ips ...string) nadv1.NetworkStatus {
		return nadv1.NetworkStatus{Name: network, Interface: iface, IPs: ips, Mac: "02:00:00:00:00:01"}
	}
	type row struct{ iface, network, state, reason string }
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		events func(*corev1.Pod) []corev1.Event
		want   []row
	}{
		{
			name: "attached, pending, failed, detaching",
			pod: testPod("p", withNetworks("br@a, br2@b, other/br2@c"),
				withStatus(st("ns/br", "a", "10.1.0.2/24"), st("ns/old", "z"))),
			events: func(p *corev1.Pod) []corev1.Event {
				failed := warning(p, "w1", "NetworkNotFound", "other/br2 as c: NetworkAttachmentDefinition other/br2 not found")
				return []corev1.Event{*failed}
			},
			want: []row{{"a", "ns/br", StateAttached, ""}, {"b", "ns/br2", StatePending, ""}, {"c", "other/br2", StateFailed, "NetworkNotFound"}, {"z", "ns/old", StateDetaching, ""}},
		},
		{
			name: "a later Normal event clears an older Warning",
			pod:  testPod("p", withNetworks("br@a")),
			events: func(p *corev1.Pod) []corev1.Event {
				return []corev1.Event{*normalEvent(p, "n", "NetworkPlugged", "plugged ns/br as a", at(5)), *warning(p, "w", "PlugFailed", "ns/br as a: boom")}
			},
			want: []row{{"a", "ns/br", StatePending, ""}},
		},
		{
			name: "the newest Warning wins",
			pod:  testPod("p", withNetworks("br@a")),
			events: func(p *corev1.Pod) []corev1.Event {
				later := warning(p, "w2", "PlugFailed", "ns/br as a: multus ADD: boom")
				later.LastTimestamp = metav1.NewTime(at(9))
				return []corev1.Event{*later, *warning(p, "w1", "NetworkNotFound", "ns/br as a: not found")}
			},
			want: []row{{"a", "ns/br", StateFailed, "PlugFailed"}},
		},
		{
			name: "unnamed elements get netplug's names",
			pod:  testPod("p", withNetworks("br, br2"), withStatus(st("ns/br2", "net1"))),
			want: []row{{"net2", "ns/br", StatePending, ""}, {"net1", "ns/br2", StateAttached, ""}},
		},
		{
			name: "refused element",
			pod:  testPod("p", withNetworks(`[{"name":"br","interface":"a"},{"name":"br2","interface":"bad/x"}]`), withStatus(st("ns/br", "a"))),
			want: []row{{"a", "ns/br", StateAttached, ""}, {"bad/x", "ns/br2", StateFailed, "InvalidInterfaceName"}},
		},
		{
			name: "malformed annotation keeps what is attached",
			pod:  testPod("p", withNetworks(`[{"name":"br"`), withStatus(st("ns/br", "a"))),
			want: []row{{"", "", StateFailed, "InvalidNetworkSelection"}, {"a", "ns/br", StateAttached, ""}},
		},
		{
			name: "host network",
			pod:  func() *corev1.Pod { p := testPod("p", withNetworks("br")); p.Spec.HostNetwork = true; return p }(),
			want: []row{{"", "", StateFailed, "HostNetworkPod"}},
		},
		{
			name: "unplug failure",
			pod:  testPod("p", withStatus(st("ns/br", "a"))),
			events: func(p *corev1.Pod) []corev1.Event {
				return []corev1.Event{*warning(p, "w", "UnplugFailed", "ns/br from a: multus DEL: boom")}
			},
			want: []row{{"a", "ns/br", StateFailed, "UnplugFailed"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var events []corev1.Event
			if tc.events != nil {
				events = tc.events(tc.pod)
			}
			var got []row
			for _, s := range PodStatus(tc.pod, events) {
				got = append(got, row{s.Interface, s.Network, s.State, s.Reason})
				if s.IPs == nil {
					t.Errorf("%s: ips is null, want a list", s.Interface)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func statusWorld(t *testing.T) *world {
	p := testPod("p", withNetworks("br@a, other/br2@c"), withStatus(nadv1.NetworkStatus{Name: "ns/br", Interface: "a", IPs: []string{"10.1.0.2/24"}, Mac: "02:00:00:00:00:02"}))
	q := testPod("q", withNetworks("br2"))
	q.Labels = map[string]string{"app": "db"}
	plain := testPod("plain")
	elsewhere := testPod("e", withNetworks("br"))
	elsewhere.Namespace = "other"
	return newWorld(t, p, q, plain, elsewhere,
		runtime.Object(warning(p, "w", "NetworkNotFound", "other/br2 as c: NetworkAttachmentDefinition other/br2 not found")))
}

func TestStatusTable(t *testing.T) {
	w := statusWorld(t)
	r := w.run("status")
	r.expect(t, ExitOK)
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	want := [][]string{
		{"POD", "INTERFACE", "NETWORK", "IPS", "MAC", "STATE", "REASON", "MESSAGE"},
		{"p", "a", "ns/br", "10.1.0.2/24", "02:00:00:00:00:02", "attached"},
		{"p", "c", "other/br2", "<none>", "<none>", "failed", "NetworkNotFound", "other/br2", "as", "c:", "NetworkAttachmentDefinition", "other/br2", "not", "found"},
		{"q", "net1", "ns/br2", "<none>", "<none>", "pending"},
	}
	if len(lines) != len(want) {
		t.Fatalf("table:\n%s", r.out)
	}
	for i, l := range lines {
		if got := strings.Fields(l); !reflect.DeepEqual(got, want[i]) {
			t.Errorf("line %d: %q, want %q", i, got, want[i])
		}
	}
	if strings.Contains(r.out, "plain") {
		t.Error("a pod without secondary networks is listed")
	}
}

func TestStatusSelectors(t *testing.T) {
	w := statusWorld(t)
	r := w.run("status", "q")
	r.expect(t, ExitOK, "net1")
	if strings.Contains(r.out, "ns/br ") {
		t.Errorf("status q shows p:\n%s", r.out)
	}
	r = w.run("status", "-l", "app=db")
	r.expect(t, ExitOK, "q")
	if strings.Contains(r.out, "10.1.0.2") {
		t.Errorf("-l app=db shows p:\n%s", r.out)
	}
	r = w.run("status", "-A")
	r.expect(t, ExitOK, "NAMESPACE", "other")
	w.run("status", "plain").expect(t, ExitOK, "No secondary networks found in pod ns/plain")
	w.run("status", "nope").expect(t, ExitNotFound, "pod ns/nope not found")
	w.run("status", "p", "-A").expect(t, ExitUsage)
	w.run("status", "-o", "wide").expect(t, ExitUsage)
}

func TestStatusJSONAndYAML(t *testing.T) {
	w := statusWorld(t)
	r := w.run("status", "p", "-o", "json")
	r.expect(t, ExitOK)
	var list StatusList
	if err := json.Unmarshal([]byte(r.out), &list); err != nil {
		t.Fatalf("%v\n%s", err, r.out)
	}
	want := StatusList{APIVersion: StatusAPIVersion, Kind: StatusKind, Items: []InterfaceStatus{
		{Namespace: "ns", Pod: "p", Node: testNode, Interface: "a", Network: "ns/br", IPs: []string{"10.1.0.2/24"}, MAC: "02:00:00:00:00:02", State: StateAttached},
		{Namespace: "ns", Pod: "p", Node: testNode, Interface: "c", Network: "other/br2", IPs: []string{}, State: StateFailed, Reason: "NetworkNotFound",
			Message: "other/br2 as c: NetworkAttachmentDefinition other/br2 not found"},
	}}
	if !reflect.DeepEqual(list, want) {
		t.Errorf("json:\n%s\nwant %+v", r.out, want)
	}
	// The field names are the schema.
	for _, field := range []string{`"apiVersion": "netplug.io/v1alpha1"`, `"kind": "InterfaceStatusList"`, `"interface": "a"`, `"network": "ns/br"`,
		`"ips": [`, `"mac": "02:00:00:00:00:02"`, `"state": "attached"`, `"reason": "NetworkNotFound"`, `"message": "other/br2`, `"pod": "p"`, `"namespace": "ns"`, `"node": "node1"`} {
		if !strings.Contains(r.out, field) {
			t.Errorf("json lacks %s", field)
		}
	}
	r = w.run("status", "p", "-o", "yaml")
	r.expect(t, ExitOK, "apiVersion: netplug.io/v1alpha1", "kind: InterfaceStatusList", "state: failed")
	var fromYAML StatusList
	if err := yaml.Unmarshal([]byte(r.out), &fromYAML); err != nil || !reflect.DeepEqual(fromYAML, want) {
		t.Errorf("yaml: %v\n%s", err, r.out)
	}
	r = w.run("status", "plain", "-o", "json")
	r.expect(t, ExitOK, `"items": []`)
}
