package cli

import (
	"context"
	"strings"
	"testing"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
)

func TestAttachEdits(t *testing.T) {
	for _, tc := range []struct {
		name, before string
		args         []string
		want         string
		output       []string
	}{
		{"empty annotation gets the comma form", "", []string{"br@data0"}, "br@data0", []string{"attaching ns/br as data0"}},
		{"unnamed: the name netplug gives it", "", []string{"br"}, "br", []string{"as net1 (the name netplug gives it)"}},
		{"comma form stays comma form", "br2@x", []string{"br@data0"}, "br2@x, br@data0", nil},
		{"other namespace", "br2", []string{"other/br2@d1"}, "br2, other/br2@d1", []string{"attaching other/br2 as d1"}},
		{"JSON form stays JSON, others byte for byte", `[{"name":"br2", "interface":"x","cni-args":{"a":1}}]`, []string{"br@data0"},
			`[{"name":"br2", "interface":"x","cni-args":{"a":1}},{"name":"br","interface":"data0"}]`, nil},
		{"JSON form with attributes", "[]", []string{"br@data0", "--ip", "10.1.0.5/24", "--ip", "fd00::5/64", "--mac", "02:00:00:00:00:05", "--cni-arg", "foo=bar", "--cni-arg", "vlan:=7"},
			`[{"name":"br","interface":"data0","ips":["10.1.0.5/24","fd00::5/64"],"mac":"02:00:00:00:00:05","cni-args":{"foo":"bar","vlan":7}}]`, nil},
		{"comma form converted to JSON for --ip", "br2@x", []string{"br@data0", "--ip", "10.1.0.5/24"},
			`[{"name":"br2","interface":"x"},{"name":"br","interface":"data0","ips":["10.1.0.5/24"]}]`, []string{"converted from the comma form to the JSON list form"}},
		{"second unnamed element of a network warns", "br", []string{"br"}, "br, br", []string{"this adds another interface"}},
		{"upper case interface name needs the JSON form", "", []string{"br@Data0"}, `[{"name":"br","interface":"Data0"}]`, nil},
		{"pre-existing problem is a warning", `[{"name":"br2","interface":"bad/name"}]`, []string{"br@data0"},
			`[{"name":"br2","interface":"bad/name"},{"name":"br","interface":"data0"}]`, []string{"already refuses"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, testPod("p", withNetworks(tc.before)))
			w.enforceResourceVersion()
			r := w.run(append([]string{"attach", "p"}, tc.args...)...)
			r.expect(t, ExitOK, tc.output...)
			if got := w.networks("p"); got != tc.want {
				t.Errorf("annotation %q, want %q", got, tc.want)
			}
			if w.patches() != 1 {
				t.Errorf("%d patches, want 1", w.patches())
			}
		})
	}
}

func TestAttachAlreadyRequestedWritesNothing(t *testing.T) {
	w := newWorld(t, testPod("p", withNetworks("br@data0")))
	w.run("attach", "p", "br@data0").expect(t, ExitOK, "already requested")
	if w.patches() != 0 {
		t.Errorf("%d patches, want none", w.patches())
	}
}

func TestAttachDryRun(t *testing.T) {
	w := newWorld(t, testPod("p", withNetworks("br2")))
	r := w.run("attach", "p", "br@d0", "--dry-run")
	r.expect(t, ExitOK)
	if strings.TrimSpace(r.out) != "br2, br@d0" || w.patches() != 0 {
		t.Errorf("dry run printed %q with %d patches", r.out, w.patches())
	}
}

// Everything netplug would refuse, and every error a user can act on, is reported before
// anything is written, with its exit code.
func TestAttachRefusals(t *testing.T) {
	forbidden := func(verb, resource string) func(*world) {
		return func(w *world) {
			w.kube.PrependReactor(verb, resource, func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(podsResource, "p", errorsNew("RBAC: no"))
			})
		}
	}
	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		setup func(*world)
		args  []string
		code  int
		msg   string
	}{
		{name: "no arguments", args: []string{}, code: ExitUsage},
		{name: "unknown flag", args: []string{"p", "br", "--nope"}, code: ExitUsage},
		{name: "wait duration without =", args: []string{"p", "br", "--wait", "30s"}, code: ExitUsage, msg: "--wait=30s"},
		{name: "two networks", args: []string{"p", "br,br2"}, code: ExitUsage},
		{name: "bad cni-arg", args: []string{"p", "br", "--cni-arg", "x"}, code: ExitUsage},
		{name: "unknown pod", args: []string{"nope", "br"}, code: ExitNotFound, msg: "pod ns/nope not found"},
		{name: "unknown NAD", args: []string{"p", "nope@x"}, code: ExitNotFound, msg: "NetworkAttachmentDefinition ns/nope not found"},
		{name: "unknown NAD in another namespace", args: []string{"p", "other/br"}, code: ExitNotFound, msg: "other/br not found"},
		{name: "invalid interface name", args: []string{"p", "br@bad/name"}, code: ExitRefused},
		{name: "interface name with a colon", args: []string{"p", "br@a:b"}, code: ExitRefused, msg: "not allowed"},
		{name: "interface name too long", args: []string{"p", "br@sixteen-chars-xx"}, code: ExitRefused, msg: "InvalidInterfaceName"},
		{name: "invalid network name", args: []string{"p", "BR"}, code: ExitRefused},
		{name: "invalid IP", args: []string{"p", "br", "--ip", "10.1.0.300/24"}, code: ExitRefused, msg: "neither an address nor a CIDR"},
		{name: "invalid MAC", args: []string{"p", "br", "--mac", "zz"}, code: ExitRefused, msg: "MAC"},
		{name: "duplicate interface", pod: testPod("p", withNetworks("br2@data0")), args: []string{"p", "br@data0"}, code: ExitRefused, msg: "DuplicateInterface"},
		{name: "malformed annotation", pod: testPod("p", withNetworks(`[{"name":"br2"}`)), args: []string{"p", "br"}, code: ExitRefused, msg: "fix or remove it first"},
		{name: "host network pod", pod: func() *corev1.Pod { p := testPod("p"); p.Spec.HostNetwork = true; return p }(), args: []string{"p", "br"}, code: ExitRefused, msg: "host network"},
		{name: "terminated pod", pod: func() *corev1.Pod { p := testPod("p"); p.Status.Phase = corev1.PodSucceeded; return p }(), args: []string{"p", "br"}, code: ExitRefused, msg: "terminated"},
		{name: "no netplug on the node", pod: func() *corev1.Pod { p := testPod("p"); p.Spec.NodeName = "node2"; return p }(), args: []string{"p", "br"}, code: ExitNoNetplug, msg: "no netplug pod runs on node node2"},
		{name: "reading the pod denied", setup: forbidden("get", "pods"), args: []string{"p", "br"}, code: ExitForbidden, msg: "permission denied (RBAC)"},
		{name: "patching the pod denied", setup: forbidden("patch", "pods"), args: []string{"p", "br"}, code: ExitForbidden, msg: "patching pod ns/p: permission denied (RBAC)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.pod)
			if tc.setup != nil {
				tc.setup(w)
			}
			r := w.run(append([]string{"attach"}, tc.args...)...)
			r.expect(t, tc.code, tc.msg)
			if tc.code != ExitForbidden && w.patches() != 0 {
				t.Errorf("%d patches, want none", w.patches())
			}
		})
	}
}

func TestAttachWarnsWhenItCannotCheck(t *testing.T) {
	w := newWorld(t, nil)
	w.nads.PrependReactor("get", "network-attachment-definitions", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(podsResource, "br", errorsNew("no"))
	})
	w.kube.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(podsResource, "", errorsNew("no"))
	})
	w.run("attach", "p", "br").expect(t, ExitOK, "cannot check that NetworkAttachmentDefinition ns/br exists", "cannot check that netplug runs on node node1")
	if w.networks("p") != "br" {
		t.Errorf("annotation %q", w.networks("p"))
	}
}

func TestAttachNetplugNotReadyWarns(t *testing.T) {
	w := newWorld(t, nil)
	if err := w.kube.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), netplugPod(testNode, false), defaultNetplugNS); err != nil {
		t.Fatal(err)
	}
	w.run("attach", "p", "br").expect(t, ExitOK, "is not ready")
}

// A Conflict once (someone wrote the pod in between): the CLI re-reads the pod and applies its
// edit on top of the other writer's.
func TestAttachConflictOnce(t *testing.T) {
	w := newWorld(t, testPod("p", withNetworks("br2@x")))
	conflicted := false
	w.kube.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicted {
			return false, nil, nil
		}
		conflicted = true
		w.otherWriter("p", func(p *corev1.Pod) { p.Annotations[networksAnnotation] = "br2@x, other/br2@y" })
		return true, nil, apierrors.NewConflict(podsResource, "p", errorsNew("the object has been modified"))
	})
	w.run("attach", "p", "br@data0").expect(t, ExitOK)
	if got, want := w.networks("p"), "br2@x, other/br2@y, br@data0"; got != want {
		t.Errorf("annotation %q, want %q", got, want)
	}
	if w.patches() != 2 {
		t.Errorf("%d patches, want 2", w.patches())
	}
}

// With resourceVersion enforced as the API server does, a write by someone else between the
// CLI's read and its patch makes the patch fail; the retry keeps both edits.
func TestAttachEnforcedResourceVersion(t *testing.T) {
	w := newWorld(t, testPod("p", withNetworks(`[{"name":"br2","interface":"x"}]`)))
	w.enforceResourceVersion()
	// The other writer acts once the CLI has read the pod: when it checks the NAD.
	w.nads.PrependReactor("get", "network-attachment-definitions", func(k8stesting.Action) (bool, runtime.Object, error) {
		w.otherWriter("p", func(p *corev1.Pod) {
			p.Annotations[networksAnnotation] = `[{"name":"br2","interface":"x"}, {"name":"br2","interface":"y"}]`
		})
		return false, nil, nil
	})
	w.run("attach", "p", "br@data0").expect(t, ExitOK)
	if got, want := w.networks("p"), `[{"name":"br2","interface":"x"}, {"name":"br2","interface":"y"}, {"name":"br","interface":"data0"}]`; got != want {
		t.Errorf("annotation %q, want %q", got, want)
	}
	if w.patches() != 2 {
		t.Errorf("%d patches, want 2 (one conflict)", w.patches())
	}
	if rv := w.pod("p").ResourceVersion; rv != "12" {
		t.Errorf("resourceVersion %s, want 12", rv)
	}
}

// An edit by someone else that makes the CLI's element invalid is caught on the retry.
func TestAttachConflictRevalidates(t *testing.T) {
	w := newWorld(t, nil)
	w.enforceResourceVersion()
	w.nads.PrependReactor("get", "network-attachment-definitions", func(k8stesting.Action) (bool, runtime.Object, error) {
		w.otherWriter("p", func(p *corev1.Pod) { p.Annotations[networksAnnotation] = "br2@data0" })
		return false, nil, nil
	})
	w.run("attach", "p", "br@data0").expect(t, ExitRefused, "DuplicateInterface")
	if got := w.networks("p"); got != "br2@data0" {
		t.Errorf("annotation %q", got)
	}
}

func TestAttachConflictsForever(t *testing.T) {
	w := newWorld(t, nil)
	w.kube.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(podsResource, "p", errorsNew("modified"))
	})
	w.run("attach", "p", "br").expect(t, ExitError, "kept changing")
}

func TestAttachPodReplaced(t *testing.T) {
	w := newWorld(t, nil)
	w.kube.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		w.otherWriter("p", func(p *corev1.Pod) { p.UID = "another" })
		return true, nil, apierrors.NewConflict(podsResource, "p", errorsNew("modified"))
	})
	w.run("attach", "p", "br").expect(t, ExitError, "replaced")
}

func attachedPod(iface, network string) *corev1.Pod {
	p := testPod("p")
	p.ResourceVersion = "11"
	p.Annotations[statusAnnotation] = statusJSON(nadv1.NetworkStatus{Name: network, Interface: iface, IPs: []string{"10.1.0.7/24"}, Mac: "02:00:00:00:00:07"})
	return p
}

func TestAttachWaitSuccess(t *testing.T) {
	w := newWorld(t, nil)
	w.fakeWatches()
	w.podWatch.Modify(testPod("p")) // netplug's finalizer, say: not done yet
	w.podWatch.Modify(attachedPod("data0", "ns/br"))
	w.run("attach", "p", "br@data0", "--wait=5s").expect(t, ExitOK, "ns/br attached as data0: 10.1.0.7/24, MAC 02:00:00:00:00:07")
}

func TestAttachWaitUnnamedTakesTheNameNetplugGives(t *testing.T) {
	w := newWorld(t, testPod("p", withNetworks("br2"), withStatus(nadv1.NetworkStatus{Name: "ns/br2", Interface: "net1"})))
	w.fakeWatches()
	p := testPod("p", withStatus(nadv1.NetworkStatus{Name: "ns/br2", Interface: "net1"}, nadv1.NetworkStatus{Name: "ns/br", Interface: "net7"}))
	w.podWatch.Modify(p)
	w.run("attach", "p", "br", "--wait").expect(t, ExitOK, "as net2 (the name netplug gives it)", "ns/br attached as net7")
}

func TestAttachWaitFailure(t *testing.T) {
	pod := testPod("p")
	old := warning(pod, "old", "NetworkNotFound", "ns/br as data0: NetworkAttachmentDefinition ns/br not found")
	w := newWorld(t, pod, old)
	w.fakeWatches()
	w.eventWatch.Add(old)                                                           // seen before the edit: not its outcome
	w.eventWatch.Add(warning(pod, "unrelated", "PlugFailed", "ns/br2 as x: boom"))  // another element
	w.eventWatch.Add(&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "kubelet"}}) // another pod's
	w.eventWatch.Add(warning(pod, "new", "PlugFailed", "ns/br as data0: multus ADD: plugin failed"))
	w.run("attach", "p", "br@data0", "--wait=5s").expect(t, ExitFailed, "netplug failed to attach ns/br as data0: PlugFailed: ns/br as data0: multus ADD: plugin failed")
}

func TestAttachWaitFailurePodLevel(t *testing.T) {
	w := newWorld(t, nil)
	w.fakeWatches()
	w.eventWatch.Add(warning(testPod("p"), "sb", "SandboxLookupFailed", "finding the pod's network namespace: no"))
	w.run("attach", "p", "br@data0", "--wait=5s").expect(t, ExitFailed, "SandboxLookupFailed")
}

func TestAttachWaitRepeatedWarningCounts(t *testing.T) {
	pod := testPod("p")
	old := warning(pod, "old", "NetworkNotFound", "ns/br as data0: not found")
	w := newWorld(t, pod, old)
	w.fakeWatches()
	again := old.DeepCopy()
	again.Count, again.ResourceVersion = 2, "101"
	w.eventWatch.Modify(again)
	w.run("attach", "p", "br@data0", "--wait=5s").expect(t, ExitFailed, "NetworkNotFound")
}

func TestAttachWaitTimeout(t *testing.T) {
	w := newWorld(t, nil)
	w.fakeWatches()
	w.run("attach", "p", "br@data0", "--wait=200ms").expect(t, ExitTimeout, "timed out after 200ms waiting to attach ns/br as data0")
}

func TestAttachWaitTimeoutPendingPod(t *testing.T) {
	p := testPod("p")
	p.Status.Phase = corev1.PodPending
	w := newWorld(t, p)
	w.fakeWatches()
	w.run("attach", "p", "br@data0", "--wait=100ms").expect(t, ExitTimeout, "the pod is Pending")
}

func TestAttachWaitPodDeleted(t *testing.T) {
	w := newWorld(t, nil)
	w.fakeWatches()
	w.podWatch.Delete(testPod("p"))
	w.run("attach", "p", "br@data0", "--wait=5s").expect(t, ExitFailed, "was deleted")
}

// A watch that ends (its resourceVersion expired, say) is started again from a fresh read.
func TestAttachWaitRewatches(t *testing.T) {
	w := newWorld(t, nil)
	first, second := watch.NewRaceFreeFake(), watch.NewRaceFreeFake()
	watches := 0
	w.kube.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		watches++
		if watches == 1 {
			return true, first, nil
		}
		return true, second, nil
	})
	first.Stop()
	second.Modify(attachedPod("data0", "ns/br"))
	w.run("attach", "p", "br@data0", "--wait=5s").expect(t, ExitOK, "attached as data0")
	if watches != 2 {
		t.Errorf("%d watches, want 2", watches)
	}
}

// Without the right to read events, --wait still sees success.
func TestAttachWaitWithoutEvents(t *testing.T) {
	w := newWorld(t, nil)
	w.fakeWatches()
	w.kube.PrependReactor("list", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(podsResource, "", errorsNew("no"))
	})
	w.podWatch.Modify(attachedPod("data0", "ns/br"))
	w.run("attach", "p", "br@data0", "--wait=5s").expect(t, ExitOK, "cannot read the events", "attached as data0")
}

func TestAttachDefaultNamespaceFlag(t *testing.T) {
	p := testPod("q")
	p.Namespace = "other"
	w := newWorld(t, nil, p)
	w.run("attach", "q", "br2", "-n", "other").expect(t, ExitOK, "attaching other/br2")
	got, err := w.kube.CoreV1().Pods("other").Get(context.Background(), "q", metav1.GetOptions{})
	if err != nil || got.Annotations[networksAnnotation] != "br2" {
		t.Errorf("pod other/q: %v %v", got.Annotations, err)
	}
}
