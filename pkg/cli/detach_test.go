package cli

import (
	"testing"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

func TestDetachEdits(t *testing.T) {
	st := func(network, iface string) nadv1.NetworkStatus {
		return nadv1.NetworkStatus{Name: network, Interface: iface}
	}
	for _, tc := range []struct {
		name, before string
		status       []nadv1.NetworkStatus
		target, want string
		output       string
	}{
		{"comma, by interface", "br@data0, br2@x", nil, "data0", "br2@x", "detaching ns/br from data0"},
		{"comma, by network", "br@data0, br2@x", nil, "br2", "br@data0", "detaching ns/br2 from x"},
		{"comma, by qualified network", "br, other/br2", nil, "other/br2", "br", "detaching other/br2 from net2"},
		{"comma, last element removes the annotation", "br@data0", nil, "data0", "", ""},
		{"comma, unnamed by the netN netplug gave it", "br2, br", []nadv1.NetworkStatus{st("ns/br", "net1"), st("ns/br2", "net2")}, "net1", "br2", "from net1"},
		{"JSON, others byte for byte", `[{"name":"br","interface":"a", "ips":["10.0.0.1/24"]}, {"name":"br2","interface":"b"}, {"name":"br","interface":"c"}]`, nil, "b",
			`[{"name":"br","interface":"a", "ips":["10.0.0.1/24"]}, {"name":"br","interface":"c"}]`, ""},
		{"JSON, invalid element can be detached", `[{"name":"br","interface":"a"}, {"name":"br2","interface":"bad/x"}]`, nil, "bad/x", `[{"name":"br","interface":"a"}]`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, testPod("p", withNetworks(tc.before), withStatus(tc.status...)))
			w.enforceResourceVersion()
			w.run("detach", "p", tc.target).expect(t, ExitOK, tc.output)
			if got := w.networks("p"); got != tc.want {
				t.Errorf("annotation %q, want %q", got, tc.want)
			}
			if _, ok := w.pod("p").Annotations[networksAnnotation]; ok != (tc.want != "") {
				t.Errorf("annotation present %t, want %t", ok, tc.want != "")
			}
		})
	}
}

func TestDetachRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, before string
		status       []nadv1.NetworkStatus
		target       string
		code         int
		msg          string
	}{
		{"not there", "br@a", nil, "nope", ExitNotFound, `no interface or network "nope" (its elements: ns/br@a)`},
		{"ambiguous network", "br@a, br@b", nil, "br", ExitRefused, "has 2 elements of network ns/br (interfaces a, b)"},
		{"unnamed twins: netplug would unplug the other one", "br, br", []nadv1.NetworkStatus{{Name: "ns/br", Interface: "net1"}, {Name: "ns/br", Interface: "net2"}}, "net1",
			ExitRefused, "netplug would keep net1 and unplug another interface"},
		{"another invalid element holds every removal", `[{"name":"br","interface":"a"}, {"name":"br2","interface":"bad/x"}]`, nil, "a", ExitRefused, "removes no interface while"},
		{"malformed annotation", `[{"name":"br"}`, nil, "br", ExitRefused, "unusable"},
		{"empty target", "br@a", nil, " ", ExitUsage, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, testPod("p", withNetworks(tc.before), withStatus(tc.status...)))
			w.run("detach", "p", tc.target).expect(t, tc.code, tc.msg)
			if w.patches() != 0 {
				t.Errorf("%d patches, want none", w.patches())
			}
		})
	}
}

// The unnamed twin that netplug unplugs when one element goes is the one the user may detach.
func TestDetachUnnamedTwinThatGoes(t *testing.T) {
	w := newWorld(t, testPod("p", withNetworks("br, br"), withStatus(nadv1.NetworkStatus{Name: "ns/br", Interface: "net1"}, nadv1.NetworkStatus{Name: "ns/br", Interface: "net2"})))
	w.run("detach", "p", "net2").expect(t, ExitOK, "from net2")
	if got := w.networks("p"); got != "br" {
		t.Errorf("annotation %q", got)
	}
}

func TestDetachAlreadyUnrequested(t *testing.T) {
	w := newWorld(t, testPod("p", withNetworks("br2@x"), withStatus(nadv1.NetworkStatus{Name: "ns/br", Interface: "data0"})))
	w.run("detach", "p", "data0").expect(t, ExitOK, "no longer requests ns/br on data0")
	if w.patches() != 0 {
		t.Errorf("%d patches", w.patches())
	}
}

func TestDetachConflictOnce(t *testing.T) {
	w := newWorld(t, testPod("p", withNetworks(`[{"name":"br","interface":"a"},{"name":"br2","interface":"b"}]`)))
	w.enforceResourceVersion()
	once := false
	w.kube.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if !once {
			once = true
			w.otherWriter("p", func(p *corev1.Pod) {
				p.Annotations[networksAnnotation] = `[{"name":"br","interface":"a"},{"name":"br2","interface":"b"},{"name":"br","interface":"c"}]`
			})
			return true, nil, apierrors.NewConflict(podsResource, "p", errorsNew("modified"))
		}
		return false, nil, nil
	})
	w.run("detach", "p", "a").expect(t, ExitOK)
	if got, want := w.networks("p"), `[{"name":"br2","interface":"b"},{"name":"br","interface":"c"}]`; got != want {
		t.Errorf("annotation %q, want %q", got, want)
	}
}

func TestDetachNoNetplug(t *testing.T) {
	p := testPod("p", withNetworks("br@a"))
	p.Spec.NodeName = "node9"
	w := newWorld(t, p)
	w.run("detach", "p", "a").expect(t, ExitNoNetplug, "node9")
}

func TestDetachWait(t *testing.T) {
	pod := testPod("p", withNetworks("br@a, br2@b"), withStatus(nadv1.NetworkStatus{Name: "ns/br", Interface: "a"}, nadv1.NetworkStatus{Name: "ns/br2", Interface: "b"}))
	gone := testPod("p", withNetworks("br2@b"), withStatus(nadv1.NetworkStatus{Name: "ns/br2", Interface: "b"}))
	t.Run("success", func(t *testing.T) {
		w := newWorld(t, pod.DeepCopy())
		w.fakeWatches()
		w.podWatch.Modify(pod.DeepCopy())
		w.podWatch.Modify(gone)
		w.run("detach", "p", "a", "--wait=5s").expect(t, ExitOK, "ns/br detached from a")
	})
	t.Run("failure", func(t *testing.T) {
		w := newWorld(t, pod.DeepCopy())
		w.fakeWatches()
		w.eventWatch.Add(warning(pod, "e1", "UnplugFailed", "ns/br from a: multus DEL: boom"))
		w.run("detach", "p", "a", "--wait=5s").expect(t, ExitFailed, "netplug failed to detach ns/br from a: UnplugFailed")
	})
	t.Run("timeout", func(t *testing.T) {
		w := newWorld(t, pod.DeepCopy())
		w.fakeWatches()
		w.eventWatch.Add(warning(pod, "e2", "UnplugFailed", "ns/br2 from b: another interface"))
		w.run("detach", "p", "a", "--wait=150ms").expect(t, ExitTimeout, "timed out after 150ms waiting to detach ns/br from a")
	})
	t.Run("already unrequested", func(t *testing.T) {
		w := newWorld(t, testPod("p", withNetworks("br2@b"), withStatus(nadv1.NetworkStatus{Name: "ns/br", Interface: "a"})))
		w.fakeWatches()
		w.podWatch.Modify(gone)
		w.run("detach", "p", "a", "--wait=5s").expect(t, ExitOK, "no longer requests ns/br on a", "ns/br detached from a")
		if w.patches() != 0 {
			t.Errorf("%d patches", w.patches())
		}
	})
}

func TestConcerns(t *testing.T) {
	for _, tc := range []struct {
		msg, network, iface string
		want                bool
	}{
		{"ns/br as net1: multus ADD: boom", "ns/br", "net1", true},
		{"ns/br as net10: multus ADD: boom", "ns/br", "net1", false},
		{"ns/br2 as net1: boom", "ns/br", "net1", false},
		{"ns/br from a: multus DEL: boom", "ns/br", "a", true},
		{"network selection element 1 (ns/br@bad:x): not allowed", "ns/br", "bad:x", true},
		{"ns/br as net3: boom", "ns/br", "", true},
		{"NetworkAttachmentDefinition ns/br not found", "ns/br", "net1", false},
	} {
		if got := concerns(&corev1.Event{Message: tc.msg}, tc.network, tc.iface); got != tc.want {
			t.Errorf("concerns(%q, %s, %s) = %t, want %t", tc.msg, tc.network, tc.iface, got, tc.want)
		}
	}
}
