package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/cri"
	"github.com/netplug/netplug/pkg/multus"
	"github.com/netplug/netplug/pkg/podwriter"
)

func nads(names ...string) []*nadv1.NetworkAttachmentDefinition {
	var out []*nadv1.NetworkAttachmentDefinition
	for _, n := range names {
		ns, name, _ := strings.Cut(n, "/")
		out = append(out, bridgeNAD(ns, name))
	}
	return out
}

func TestSyncAddRemoveAndBoth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "")}, nads("ns/a", "ns/b"))
	f.annotate("ns", "p", "a@net1")
	f.mustSync("ns", "p")
	f.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	f.expectEvent("Normal", ReasonPlugged, "ns/a as net1")
	// Add b and remove a in one edit: the removal goes first.
	f.annotate("ns", "p", "b@net2")
	f.mustSync("ns", "p")
	f.converged("ns", "p", []string{"ns/b@net2"}, []string{"net2=b"})
	f.expectEvent("Normal", ReasonUnplugged, "ns/a from net1")
	f.expectEvent("Normal", ReasonPlugged, "ns/b as net2")
	// Remove everything.
	f.annotate("ns", "p", "")
	f.mustSync("ns", "p")
	f.converged("ns", "p", nil, nil)
	f.settled("uid-p")
	f.expectCalls("ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net2 b", "DEL ns/p net2 b")
	if p := f.pod("ns", "p"); podwriter.HasFinalizer(p) {
		t.Fatalf("finalizers %v after the last unplug", p.Finalizers)
	}
}

func TestSyncUnnamedElementsKeepTheirInterfaces(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a,b,a")}, nads("ns/a", "ns/b"),
		func(o *Options) { o.StepsInParallel = 1 }) // the calls in the plan's order
	want := []string{"ns/a@net1", "ns/b@net2", "ns/a@net3"}
	f.mustSync("ns", "p")
	f.converged("ns", "p", want, []string{"net1=a", "net2=b", "net3=a"})
	// Three more reconciles (resync-like updates and a restart): nothing moves.
	for i := 0; i < 3; i++ {
		f.update("ns", "p", func(p *corev1.Pod) { p.Labels = map[string]string{"round": string(rune('0' + i))} })
		if i == 1 {
			f.open()
		}
		f.mustSync("ns", "p")
	}
	f.converged("ns", "p", want, []string{"net1=a", "net2=b", "net3=a"})
	f.expectCalls("ADD ns/p net1 a", "ADD ns/p net2 b", "ADD ns/p net3 a")
	// Unplug the unnamed b: only net2 goes.
	f.annotate("ns", "p", "a,a")
	f.mustSync("ns", "p")
	f.converged("ns", "p", []string{"ns/a@net1", "ns/a@net3"}, []string{"net1=a", "net3=a"})
	f.expectCalls("ADD ns/p net1 a", "ADD ns/p net2 b", "ADD ns/p net3 a", "DEL ns/p net2 b")
}

func TestSyncAttributeChangeIsAReplug(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", `[{"name":"a","interface":"net1","ips":["10.1.0.5/24"]}]`)}, nads("ns/a", "ns/b"))
	f.mustSync("ns", "p")
	f.annotate("ns", "p", `[{"name":"a","interface":"net1","ips":["10.1.0.6/24"]}]`)
	f.mustSync("ns", "p")
	if st := f.pod("ns", "p").Annotations[nadv1.NetworkStatusAnnot]; !strings.Contains(st, `"10.1.0.6"`) || strings.Contains(st, `"10.1.0.5"`) {
		t.Fatalf("network-status %s, want the new IP only", st)
	}
	f.expectEvent("Normal", ReasonReplugged, "ns/a as net1")
	f.annotate("ns", "p", `[{"name":"a","interface":"net1","ips":["10.1.0.6/24"],"cni-args":{"x":"y"}}]`)
	f.mustSync("ns", "p")
	// Another network on the same interface: DEL with a's config, ADD with b's.
	f.annotate("ns", "p", `[{"name":"b","interface":"net1"}]`)
	f.mustSync("ns", "p")
	f.converged("ns", "p", []string{"ns/b@net1"}, []string{"net1=b"})
	f.expectCalls("ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 b")
	f.settled("uid-p", "net1")
}

// netplug dies between the ADD of a replug and the status write (the kubelet restarts it after
// a Multus restart): network-status still describes the old link. The restarted controller must
// not take that entry for the new link (the soak found a pod whose network-status kept the old
// MAC for minutes); the in-flight checkpoint makes it replug and record the new result.
func TestSyncReplugInterruptedBeforeTheStatusWriteIsRepluggedAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", `[{"name":"a","interface":"net1","ips":["10.1.0.5/24"]}]`)}, nads("ns/a"))
	f.mustSync("ns", "p")
	f.refuseStatusWrites(-1, apierrors.NewServiceUnavailable("down"))
	f.annotate("ns", "p", `[{"name":"a","interface":"net1","ips":["10.1.0.6/24"]}]`)
	if err := f.sync("ns", "p"); err == nil {
		t.Fatal("a reconcile whose status write failed must be retried")
	}
	if r := f.records("uid-p"); len(r) != 1 || r[0].InFlight != checkpoint.InFlightAdd {
		t.Fatalf("records %+v, want net1 in flight for the replug's ADD", r)
	}
	f.allowStatusWrites()
	f.open()
	f.mustSync("ns", "p")
	if link := f.delegate.links[sandboxFor("uid-p").NetNS]["net1"]; !slices.Equal(link.IPs, []string{"10.1.0.6/24"}) {
		t.Fatalf("link IPs %v", link.IPs)
	}
	if st := f.pod("ns", "p").Annotations[nadv1.NetworkStatusAnnot]; !strings.Contains(st, `"10.1.0.6"`) {
		t.Fatalf("network-status %s, want the new address", st)
	}
	f.expectCalls("ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 a")
	f.settled("uid-p", "net1")
}

// The status write of a reconcile fails and netplug restarts before it works: the next
// selection must not be judged by the network-status of before (the soak found both).
func TestSyncStatusLeftBehindByAFailedWrite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// first is the edit whose status write fails, then the edit made while netplug is down.
		first, then string
		calls       []string
		status      []string
		links       []string
	}{{
		// The interface is unplugged while the API server refuses status writes, and asked for
		// again before they work (the soak's kube-apiserver restart): network-status still lists
		// it, the link is gone. netplug must not take the stale entry for the interface.
		name: "an unplug not yet in status is not mistaken for attached", first: "", then: "a@net1",
		// The DEL marked in flight is done again (a DEL of what is gone is done), then the ADD.
		calls:  []string{"ADD ns/p net1 a", "DEL ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 a"},
		status: []string{"ns/a@net1"}, links: []string{"net1=a"},
	}, {
		// A replug from a to b leaves network-status saying a while the checkpoint says b; the
		// next edit (to c) must DEL the interface with b's config, or b's address leaks
		// (host-local kept an address of a deleted pod).
		name: "a replug without status write DELs the new network", first: "b@net1", then: "c@net1",
		calls:  []string{"ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 b", "DEL ns/p net1 b", "ADD ns/p net1 c"},
		status: []string{"ns/c@net1"}, links: []string{"net1=c"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a", "ns/b", "ns/c"))
			f.mustSync("ns", "p")
			f.refuseStatusWrites(-1, apierrors.NewServiceUnavailable("down"))
			f.annotate("ns", "p", tc.first)
			if err := f.sync("ns", "p"); err == nil {
				t.Fatal("a reconcile whose status write failed must be retried")
			}
			f.expectEvent("Warning", ReasonStatusWriteFailed)
			f.annotate("ns", "p", tc.then)
			f.allowStatusWrites()
			f.open()
			f.mustSync("ns", "p")
			f.converged("ns", "p", tc.status, tc.links)
			f.expectCalls(tc.calls...)
			f.settled("uid-p", "net1")
		})
	}
}

// A checkpoint whose interface the cached network-status does not list may still be listed by
// the API server (a status write that landed although its answer was lost, and an informer
// that has not seen it yet; the soak found a pod left with a stale entry that way). Unplugging
// it writes its removal anyway, guarded by resourceVersion, before the checkpoint goes.
func TestSyncUnplugOfAnUnconfirmedRecordWritesItsRemoval(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	f.mustSync("ns", "p")
	// The restarted controller finds net1 checkpointed but not in its view of network-status.
	f.open()
	f.update("ns", "p", func(p *corev1.Pod) {
		p.Annotations[nadv1.NetworkStatusAnnot] = "[" + podnetStatus + "]"
		p.Annotations[nadv1.NetworkAttachmentAnnot] = ""
	})
	f.kube.ClearActions()
	f.mustSync("ns", "p")
	f.expectCalls("ADD ns/p net1 a", "DEL ns/p net1 a")
	if n := f.statusWrites(); n != 1 {
		t.Fatalf("%d network-status writes, want the removal of net1 written once", n)
	}
	f.settled("uid-p")
}

// A NAD that does not exist yet is a Warning and a retry; its creation queues the pods that
// select it (and only those), which then converge.
func TestSyncMissingNADThenCreated(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1,late@net2"), runningPod("ns", "q", "a@net1")}, nads("ns/a"))
	if err := f.sync("ns", "p"); err == nil || !strings.Contains(err.Error(), "ns/late") {
		t.Fatalf("err %v, want a retry naming ns/late", err)
	}
	f.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	f.expectEvent("Warning", ReasonNetworkNotFound, "ns/late")
	late := bridgeNAD("ns", "late")
	if _, err := f.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions("ns").Create(f.ctx, late, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	f.ctrl.nadChanged(late)
	f.ctrl.nadChanged("not a NAD")
	if n := f.ctrl.plugs.Len(); n != 1 {
		t.Fatalf("%d keys queued, want p only", n)
	}
	k, _ := f.ctrl.plugs.Get()
	f.ctrl.plugs.Done(k)
	if k != (key{Namespace: "ns", Name: "p"}) {
		t.Fatalf("queued %v", k)
	}
	f.mustSync(k.Namespace, k.Name)
	f.converged("ns", "p", []string{"ns/a@net1", "ns/late@net2"}, []string{"net1=a", "net2=late"})
}

// A failing element is retried (after a DEL of whatever its ADD left) without holding up the
// pod's other elements, or another pod.
func TestSyncOneFailingElementDoesNotBlockTheOthers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", ""), runningPod("ns", "q", "a@net1")}, nads("ns/a", "ns/b", "ns/c"))
	f.mustSync("ns", "q")
	failures := 0
	f.delegate.setFail(func(cmd string, r multus.Request) error {
		if cmd == "ADD" && networkOf(r) == "b" && failures < 2 {
			failures++
			return &multus.DaemonError{StatusCode: 400, Message: "bridge: IP address conflict"}
		}
		return nil
	})
	f.annotate("ns", "p", "a@net1,b@net2,c@net3")
	for i := 0; i < 2; i++ {
		if err := f.sync("ns", "p"); err == nil || !strings.Contains(err.Error(), "IP address conflict") {
			t.Fatalf("attempt %d: err %v, want a retry", i, err)
		}
		f.converged("ns", "p", []string{"ns/a@net1", "ns/c@net3"}, []string{"net1=a", "net3=c"})
	}
	f.expectEvent("Warning", ReasonPlugFailed, "ns/b as net2", "IP address conflict")
	f.mustSync("ns", "p")
	f.converged("ns", "p", []string{"ns/a@net1", "ns/c@net3", "ns/b@net2"}, []string{"net1=a", "net2=b", "net3=c"})
	var ofB []string
	for _, c := range f.delegate.callLog() {
		if strings.HasPrefix(c, "ADD ns/p net2") || strings.HasPrefix(c, "DEL ns/p net2") {
			ofB = append(ofB, c)
		}
	}
	if want := []string{"ADD ns/p net2 b", "DEL ns/p net2 b", "ADD ns/p net2 b", "DEL ns/p net2 b", "ADD ns/p net2 b"}; !slices.Equal(ofB, want) {
		t.Fatalf("calls for b %v, want %v", ofB, want)
	}
	f.converged("ns", "q", []string{"ns/a@net1"}, []string{"net1=a"})
}

// A status write that conflicts is recomputed and written without a replug; one that fails for
// good leaves the interface checkpointed but unconfirmed: the retry replugs it (DEL + ADD) to
// learn its result, and never adds a duplicate.
func TestSyncStatusWriteFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		err     error
		refused int
		retried bool
		calls   []string
	}{
		{name: "conflicts are recomputed", refused: 2,
			err:   apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "p", errors.New("changed")),
			calls: []string{"ADD ns/p net1 a"}},
		{name: "a failure is replugged on the retry", refused: 1, retried: true,
			err:   apierrors.NewServiceUnavailable("apiserver restarting"),
			calls: []string{"ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "")}, nads("ns/a"))
			refused := f.refuseStatusWrites(tc.refused, tc.err)
			f.annotate("ns", "p", "a@net1")
			if err := f.sync("ns", "p"); (err != nil) != tc.retried {
				t.Fatalf("err %v, want a retry: %v", err, tc.retried)
			}
			if tc.retried {
				f.expectEvent("Warning", ReasonStatusWriteFailed, "apiserver restarting")
				f.mustSync("ns", "p")
			}
			if n := refused(); n != tc.refused {
				t.Fatalf("%d writes refused, want %d", n, tc.refused)
			}
			f.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
			f.expectCalls(tc.calls...)
			f.settled("uid-p", "net1")
		})
	}
}

func TestSyncPendingThenRunning(t *testing.T) {
	t.Parallel()
	p := runningPod("ns", "p", "a@net1")
	p.Status.Phase = corev1.PodPending
	f := newFixture(t, []*corev1.Pod{p}, nads("ns/a"))
	f.mustSync("ns", "p")
	f.expectCalls()
	running := f.pod("ns", "p")
	running.Status.Phase = corev1.PodRunning
	if _, err := f.kube.CoreV1().Pods("ns").UpdateStatus(f.ctx, running, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.mustSync("ns", "p")
	f.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
}

// A running pod without a READY sandbox yet is requeued with backoff, through the queue as a
// worker does it, until the sandbox is there.
func TestSyncRunningWithoutReadySandboxIsRetried(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"),
		func(o *Options) { o.RetryBase, o.RetryMax = time.Millisecond, time.Millisecond })
	delete(f.runtime.sandboxes, "uid-p")
	k := key{Namespace: "ns", Name: "p"}
	f.ctrl.plugs.Add(k)
	for i := 1; i <= 2; i++ {
		f.process(f.ctrl.plugs)
		if n := f.ctrl.plugs.NumRequeues(k); n != i {
			t.Fatalf("attempt %d: %d requeues", i, n)
		}
	}
	f.expectCalls()
	f.runtime.set("uid-p", sandboxFor("uid-p"))
	f.process(f.ctrl.plugs)
	if n := f.ctrl.plugs.NumRequeues(k); n != 0 {
		t.Fatalf("%d requeues left after a success", n)
	}
	f.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
}

// What the runtime says of the pod's sandbox decides whether anything is tried: a host-network
// pod is refused (with a Warning only if it asks for networks), a failed lookup is an error
// for the backoff, and no READY sandbox a quiet requeue.
func TestSyncSandboxLookup(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		hostNetwork bool
		annotation  string
		err         error
		wantErr     func(error) bool
		event       []string
	}{
		{name: "host-network pod", hostNetwork: true, annotation: "a@net1", event: []string{"Warning", ReasonHostNetwork, "pod uses the host network"}},
		{name: "host-network pod asking for nothing", hostNetwork: true, annotation: " "},
		{name: "host-network sandbox", annotation: "a@net1", err: cri.ErrHostNetwork, event: []string{"Warning", ReasonHostNetwork, "pod sandbox uses the host network"}},
		{name: "runtime down", annotation: "a@net1", err: errors.New("crio: connection refused"),
			wantErr: func(err error) bool { return err != nil && !isRequeue(err) }, event: []string{"Warning", ReasonSandboxLookup, "crio: connection refused"}},
		{name: "no ready sandbox", annotation: "a@net1", err: cri.ErrNoReadySandbox, wantErr: isRequeue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pod := runningPod("ns", "p", tc.annotation)
			pod.Spec.HostNetwork = tc.hostNetwork
			f := newFixture(t, []*corev1.Pod{pod}, nads("ns/a"))
			f.runtime.err = tc.err
			err := f.sync("ns", "p")
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !tc.wantErr(err) {
				t.Fatalf("err %v", err)
			}
			ev := f.events()
			if tc.event != nil && !hasEvent(ev, tc.event...) || tc.event == nil && len(ev) != 0 {
				t.Fatalf("events %v, want %q", ev, tc.event)
			}
			f.expectCalls()
			if len(f.records("uid-p")) != 0 || podwriter.HasFinalizer(f.pod("ns", "p")) {
				t.Fatalf("records %+v, finalizers %v", f.records("uid-p"), f.pod("ns", "p").Finalizers)
			}
		})
	}
}

// An element whose network cannot be used is refused with a Warning naming why, and the pod's
// other elements are plugged. Only a missing NAD is retried: isolation and a bad config wait
// for an edit (of the annotation, the config or the NAD), which enqueues the pod.
func TestSyncRefusesUnusableNetworks(t *testing.T) {
	t.Parallel()
	noConfig := bridgeNAD("ns", "bad")
	noConfig.Spec.Config = " "
	invalid := bridgeNAD("ns", "bad")
	invalid.Spec.Config = `{"cniVersion":`
	isolated := func(o *Options) {
		o.NamespaceIsolation = true
		o.IsGlobalNamespace = func(ns string) bool { return ns == "global" }
	}
	for _, tc := range []struct {
		name       string
		annotation string
		nads       []*nadv1.NetworkAttachmentDefinition
		opts       []envOption
		status     []string
		event      []string
		retried    bool
	}{
		{name: "another namespace under isolation", annotation: "other/x@net1,global/g@net2,a@net3",
			nads: nads("ns/a", "other/x", "global/g"), opts: []envOption{isolated},
			status: []string{"global/g@net2", "ns/a@net3"}, event: []string{"Warning", ReasonIsolation, "other/x"}},
		{name: "no spec.config", annotation: "bad@net1,a@net3", nads: append(nads("ns/a"), noConfig),
			status: []string{"ns/a@net3"}, event: []string{"Warning", ReasonInvalidNetwork, "ns/bad", "no spec.config"}},
		{name: "invalid config", annotation: "bad@net1,a@net3", nads: append(nads("ns/a"), invalid),
			status: []string{"ns/a@net3"}, event: []string{"Warning", ReasonInvalidNetwork, "ns/bad"}},
		{name: "missing NAD", annotation: "bad@net1,a@net3", nads: nads("ns/a"), retried: true,
			status: []string{"ns/a@net3"}, event: []string{"Warning", ReasonNetworkNotFound, "ns/bad"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", tc.annotation)}, tc.nads, tc.opts...)
			if err := f.sync("ns", "p"); (err != nil) != tc.retried {
				t.Fatalf("err %v, want a retry: %v", err, tc.retried)
			}
			f.expectEvent(tc.event...)
			if got := f.statusOf("ns", "p"); !slices.Equal(got, tc.status) {
				t.Fatalf("status %v, want %v", got, tc.status)
			}
			for _, c := range f.delegate.callLog() {
				if strings.Contains(c, " net1 ") {
					t.Fatalf("the refused element was called: %v", f.delegate.callLog())
				}
			}
		})
	}
}

// A selection or a network-status that cannot be read changes nothing, with a Warning that
// says why, and is not retried: only an edit fixes it.
func TestSyncMalformedInputChangesNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, annotation, value, reason string
	}{
		{"truncated selection", nadv1.NetworkAttachmentAnnot, `[{"name":`, ReasonInvalidSelection},
		{"one interface twice", nadv1.NetworkAttachmentAnnot, `[{"name":"a","interface":"net1"},{"name":"a","interface":"net1"}]`, ReasonDuplicateInterface},
		{"interface name with a slash", nadv1.NetworkAttachmentAnnot, `[{"name":"a","interface":"bad/name"}]`, ReasonInvalidInterface},
		{"unreadable network-status", nadv1.NetworkStatusAnnot, `[{"name":`, ReasonInvalidStatus},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
			f.mustSync("ns", "p")
			f.update("ns", "p", func(p *corev1.Pod) { p.Annotations[tc.annotation] = tc.value })
			before := f.pod("ns", "p").Annotations[nadv1.NetworkStatusAnnot]
			f.mustSync("ns", "p")
			f.expectEvent("Warning", tc.reason)
			if after := f.pod("ns", "p").Annotations[nadv1.NetworkStatusAnnot]; after != before {
				t.Fatalf("network-status changed from %s to %s", before, after)
			}
			f.expectCalls("ADD ns/p net1 a")
			f.settled("uid-p", "net1")
		})
	}
}

func TestSyncIgnoresPodsOfOtherNodes(t *testing.T) {
	t.Parallel()
	other := runningPod("ns", "elsewhere", "a@net1")
	other.Spec.NodeName = "node-b"
	f := newFixture(t, []*corev1.Pod{other}, nads("ns/a"))
	f.mustSync("ns", "elsewhere")
	f.ctrl.enqueuePod(other)
	f.ctrl.enqueuePod("not a pod")
	f.expectCalls()
	if got := f.statusOf("ns", "elsewhere"); len(got) != 0 || f.ctrl.plugs.Len() != 0 || f.podPatches() != 0 {
		t.Fatalf("status %v, queued %d: another node's pod was touched", got, f.ctrl.plugs.Len())
	}
}

// The controller died between the ADD and the status write: the restart finds the checkpoint,
// replugs once, and does not add a second interface.
func TestSyncCrashBetweenAddAndStatusWrite(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "")}, nads("ns/a"))
	f.refuseStatusWrites(-1, apierrors.NewServiceUnavailable("down"))
	f.annotate("ns", "p", "a@net1")
	if err := f.sync("ns", "p"); err == nil {
		t.Fatal("a reconcile whose status write failed must be retried")
	}
	f.allowStatusWrites()
	f.open()
	f.mustSync("ns", "p")
	f.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	f.expectCalls("ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 a")
	f.settled("uid-p", "net1")
}

// Multus dies during a DEL, after the link is gone (the soak found it): the DEL fails, and the
// user asks for the interface again before any retry. netplug must not trust network-status,
// which still lists it: the interface is replugged, not assumed, and comes back.
func TestSyncInterruptedUnplugIsNotMistakenForAttached(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	f.mustSync("ns", "p")
	netns := sandboxFor("uid-p").NetNS
	f.delegate.setFail(func(cmd string, r multus.Request) error {
		if cmd == "DEL" {
			delete(f.delegate.links[netns], r.IfName) // the link went before the daemon died
			return errors.New("EOF")
		}
		return nil
	})
	f.annotate("ns", "p", "")
	if err := f.sync("ns", "p"); err == nil {
		t.Fatal("a failed DEL must be retried")
	}
	f.expectEvent("Warning", ReasonUnplugFailed, "ns/a from net1", "EOF")
	if got := f.statusOf("ns", "p"); !slices.Equal(got, []string{"ns/a@net1"}) {
		t.Fatalf("status = %v, want net1 still listed after a failed DEL", got)
	}
	if r := f.records("uid-p"); len(r) != 1 || r[0].InFlight != checkpoint.InFlightDel {
		t.Fatalf("checkpoints %+v, want net1 marked in flight for a DEL", r)
	}
	f.open() // and the controller restarts meanwhile: the mark is on disk
	f.delegate.setFail(nil)
	f.annotate("ns", "p", "a@net1")
	f.mustSync("ns", "p")
	f.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	f.expectCalls("ADD ns/p net1 a", "DEL ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 a")
	f.settled("uid-p", "net1")
}

// The sandbox is recreated: Multus attached the annotation's networks to the new one and
// rewrote network-status; the old netns (and its net1) is gone, its IPAM allocation is not.
// The old record is released, and the new sandbox's net1 adopted (no call).
func TestSyncSandboxRecreatedReleasesOldInterfaces(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	f.mustSync("ns", "p")
	f.runtime.set("uid-p", cri.Sandbox{ID: "sb-new", NetNS: "/var/run/netns/new"})
	f.delegate.links["/var/run/netns/new"] = map[string]multus.Request{"net1": {Config: []byte(`{"name":"a"}`)}}
	f.mustSync("ns", "p")
	if got := f.delegate.linksOf(sandboxFor("uid-p").NetNS); len(got) != 0 {
		t.Fatalf("old sandbox links %v", got)
	}
	if got := f.records("uid-p"); len(got) != 1 || got[0].SandboxID != "sb-new" || !got[0].Adopted {
		t.Fatalf("records %+v, want the new sandbox's net1, adopted", got)
	}
	if got := f.delegate.linksOf("/var/run/netns/new"); !slices.Equal(got, []string{"net1=a"}) {
		t.Fatalf("new sandbox links %v", got)
	}
	f.expectCalls("ADD ns/p net1 a", "DEL ns/p net1 a")
}

// A record of an old sandbox that cannot be released still holds its interface name: nothing
// is plugged under that name in the new sandbox until the release works.
func TestSyncFailedReleaseOfAnOldSandboxBlocksItsName(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	f.mustSync("ns", "p")
	f.delegate.failNext("DEL", -1, errors.New("dial unix /run/multus/multus.sock: connect: connection refused"))
	// The new sandbox came up without net1 (it was hot-plugged, so Multus did not attach it).
	f.runtime.set("uid-p", cri.Sandbox{ID: "sb-new", NetNS: "/var/run/netns/new"})
	f.update("ns", "p", func(p *corev1.Pod) { p.Annotations[nadv1.NetworkStatusAnnot] = "[" + podnetStatus + "]" })
	if err := f.sync("ns", "p"); err == nil {
		t.Fatal("a failed release must be retried")
	}
	f.expectEvent("Warning", ReasonOrphanUnplugFailed, "ns/a (net1) of an old sandbox", "connection refused")
	f.expectCalls("ADD ns/p net1 a", "DEL ns/p net1 a")
	f.delegate.setFail(nil)
	f.mustSync("ns", "p")
	f.expectCalls("ADD ns/p net1 a", "DEL ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 a")
	if got := f.delegate.linksOf("/var/run/netns/new"); !slices.Equal(got, []string{"net1=a"}) {
		t.Fatalf("new sandbox links %v", got)
	}
	if got := f.records("uid-p"); len(got) != 1 || got[0].SandboxID != "sb-new" {
		t.Fatalf("records %+v", got)
	}
}

// An interface Multus attached at pod creation has no checkpoint: it is unplugged with the
// NAD's config; once adopted (recorded with its NAD's config) its DEL needs no NAD any more;
// without either it is left in place with a Warning.
func TestSyncUnplugOfAnInterfaceMultusAttached(t *testing.T) {
	t.Parallel()
	attached := func(name string) *corev1.Pod {
		return withStatus(runningPod("ns", name, "a@net1"), "["+podnetStatus+`,{"name":"ns/a","interface":"net1","ips":["10.9.9.9"]}]`)
	}
	f := newFixture(t, []*corev1.Pod{attached("p"), attached("q")}, nads("ns/a"))
	for _, name := range []string{"p", "q"} {
		f.delegate.links[sandboxFor(types.UID("uid-"+name)).NetNS] = map[string]multus.Request{"net1": {Config: []byte(`{"name":"a"}`)}}
		f.mustSync("ns", name)
	}
	f.expectCalls()
	f.annotate("ns", "p", "")
	f.mustSync("ns", "p")
	f.converged("ns", "p", nil, nil)
	if err := f.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions("ns").Delete(f.ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.annotate("ns", "q", "")
	f.mustSync("ns", "q")
	f.converged("ns", "q", nil, nil)
	f.expectCalls("DEL ns/p net1 a", "DEL ns/q net1 a")
	for _, name := range []string{"p", "q"} {
		if p := f.pod("ns", name); podwriter.HasFinalizer(p) {
			t.Fatalf("finalizer on a pod netplug never plugged anything into: %v", p.Finalizers)
		}
	}
}

// An interface the pod asked Multus for at creation, never adopted, whose NAD is gone by the
// time the selection drops it, cannot be DELeted (there is no config to DEL it with): it stays,
// with a Warning, and the reconcile is retried.
func TestSyncUnplugWithoutAConfigLeavesTheInterface(t *testing.T) {
	t.Parallel()
	pod := runningPod("ns", "p", "a@net1")
	pod.Status.Phase = corev1.PodPending
	f := newFixture(t, []*corev1.Pod{pod}, nil)
	f.mustSync("ns", "p") // netplug sees what the pod asks Multus for
	f.update("ns", "p", func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Annotations[nadv1.NetworkStatusAnnot] = "[" + podnetStatus + `,{"name":"ns/a","interface":"net1"}]`
		p.Annotations[nadv1.NetworkAttachmentAnnot] = ""
	})
	if err := f.sync("ns", "p"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("err %v, want a retry", err)
	}
	f.expectEvent("Warning", ReasonUnplugFailed, "ns/a from net1", "left in place")
	f.expectCalls()
	if got := f.statusOf("ns", "p"); !slices.Equal(got, []string{"ns/a@net1"}) {
		t.Fatalf("status %v", got)
	}
}

// A deleted pod's release is queued by the delete handler (also from a tombstone), retried
// with backoff through the release queue while the daemon does not answer, and done once it
// does.
func TestSyncOrphanReleaseRetriesUntilTheDaemonAnswers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"),
		func(o *Options) { o.RetryBase, o.RetryMax = time.Millisecond, time.Millisecond })
	f.mustSync("ns", "p")
	dels := f.delegate.failNext("DEL", 2, errors.New("dial unix /run/multus/multus.sock: connect: no such file or directory"))
	gone := f.deletePod("ns", "p")
	f.ctrl.podDeleted(cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: gone})
	f.ctrl.podDeleted("not a pod")
	k := key{UID: "uid-p"}
	if n := f.ctrl.releases.Len(); n != 1 {
		t.Fatalf("%d releases queued", n)
	}
	for i := 1; i <= 2; i++ {
		f.process(f.ctrl.releases)
		if n := f.ctrl.releases.NumRequeues(k); n != i {
			t.Fatalf("attempt %d: %d requeues", i, n)
		}
	}
	f.process(f.ctrl.releases)
	if n := f.ctrl.releases.NumRequeues(k); n != 0 {
		t.Fatalf("%d requeues left after the release", n)
	}
	f.expectCalls("ADD ns/p net1 a", "DEL ns/p net1 a", "DEL ns/p net1 a", "DEL ns/p net1 a")
	if n := dels(); n != 2 {
		t.Fatalf("%d DELs failed, want 2", n)
	}
	if pods, _ := f.store.Pods(); len(pods) != 0 {
		t.Fatalf("records of %v left", pods)
	}
}

// The pods deleted while netplug was down are found among the records at start and released.
func TestSyncReleasesPodsDeletedWhileDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1,a@net2"), runningPod("ns", "q", "a@net1")}, nads("ns/a"))
	f.mustSync("ns", "p")
	f.mustSync("ns", "q")
	f.open()
	f.deletePod("ns", "q")
	f.ctrl.enqueueOrphans(f.ctx)
	if n := f.ctrl.releases.Len(); n != 1 {
		t.Fatalf("%d releases queued, want q's", n)
	}
	f.process(f.ctrl.releases)
	if got := f.delegate.linksOf(sandboxFor("uid-q").NetNS); len(got) != 0 {
		t.Fatalf("q's links %v", got)
	}
	if pods, _ := f.store.Pods(); !slices.Equal(pods, []string{"uid-p"}) {
		t.Fatalf("records of %v, want p's only", pods)
	}
	f.converged("ns", "p", []string{"ns/a@net1", "ns/a@net2"}, []string{"net1=a", "net2=a"})
}

func TestNewRequiresANodeName(t *testing.T) {
	t.Parallel()
	if _, err := New(Options{}, nil, nil, nil, nil, nil, nil, nil); err == nil {
		t.Fatal("New without a node name succeeded")
	}
}

// A terminating pod keeps netplug's finalizer until its sandbox has stopped and every
// interface netplug plugged has had its DEL (Multus needs the pod object for that DEL).
func TestSyncTerminatingPodIsReleasedBeforeItGoes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	f.mustSync("ns", "p")
	if p := f.pod("ns", "p"); !podwriter.HasFinalizer(p) {
		t.Fatalf("no finalizer after a plug: %v", p.Finalizers)
	}
	f.update("ns", "p", func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: f.now} })
	if err := f.sync("ns", "p"); !isRequeue(err) {
		t.Fatalf("err %v, want a requeue while the sandbox runs", err)
	}
	if got := f.delegate.linksOf(sandboxFor("uid-p").NetNS); len(got) != 1 || !podwriter.HasFinalizer(f.pod("ns", "p")) {
		t.Fatalf("released while the sandbox still runs: links %v", got)
	}
	delete(f.runtime.sandboxes, "uid-p")
	f.mustSync("ns", "p")
	if podwriter.HasFinalizer(f.pod("ns", "p")) {
		t.Fatal("finalizer left")
	}
	f.expectCalls("ADD ns/p net1 a", "DEL ns/p net1 a")
	f.expectEvent("Normal", ReasonReleased, "ns/a from net1")
	f.settled("uid-p")
}

// Whole-loop tests: the informers, the queues and the workers, for what only they can show.

// Asked to stop (SIGTERM) while an ADD is under way, the controller finishes that reconcile,
// status write and checkpoint included, before it exits: a half-done reconcile leaves states
// the next process cannot tell apart (the soak found drift after a graceful stop).
func TestStopFinishesTheReconcileUnderWay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "")}, nads("ns/a"))
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.delegate.setFail(func(cmd string, _ multus.Request) error {
		if cmd == "ADD" {
			once.Do(func() { close(started) })
			<-release
		}
		return nil
	})
	e.annotate("ns", "p", "a@net1")
	<-started
	stopped := make(chan struct{})
	go func() { e.shutdown(); close(stopped) }()
	<-e.ctx.Done() // the stop request is in while the ADD is still under way
	select {
	case <-stopped:
		t.Fatal("the controller stopped before the reconcile under way finished")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the controller did not stop after the reconcile under way finished")
	}
	if got := e.statusOf("ns", "p"); !slices.Equal(got, []string{"ns/a@net1"}) {
		t.Fatalf("status %v after a stop during the ADD, want net1 written", got)
	}
	if listing, _ := e.store.List("uid-p"); len(listing.Entries) != 1 || listing.Entries[0].InFlight != "" {
		t.Fatalf("checkpoints %+v, want net1 settled", listing.Entries)
	}
}

// Through the informers and both queues: a delete event releases a pod while netplug runs,
// and a pod deleted while it is down is released after the restart.
func TestDeletedPodIsReleasedEvenAfterARestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "a@net1,a@net2"), runningPod("ns", "q", "a@net1")}, nads("ns/a"))
	e.converged("ns", "p", []string{"ns/a@net1", "ns/a@net2"}, []string{"net1=a", "net2=a"})
	e.converged("ns", "q", []string{"ns/a@net1"}, []string{"net1=a"})
	if err := e.kube.CoreV1().Pods("ns").Delete(context.Background(), "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("p released", func() bool { return len(e.delegate.linksOf(sandboxFor("uid-p").NetNS)) == 0 })
	e.shutdown()
	if err := e.kube.CoreV1().Pods("ns").Delete(context.Background(), "q", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.start()
	e.eventually("q released", func() bool { return len(e.delegate.linksOf(sandboxFor("uid-q").NetNS)) == 0 })
	e.eventually("checkpoints gone", func() bool { pods, _ := e.store.Pods(); return len(pods) == 0 })
}

// Records that cannot be listed stop every kind of reconcile of the pod before any call, with
// a retry: a plug (with a Warning on the pod), a release of a completed or a terminating pod,
// and the release of a deleted one. Without a list of pods, no orphan is queued at start.
func TestSyncUnreadableRecordsAreRetried(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*corev1.Pod)
		key  key
	}{
		{name: "running", edit: func(*corev1.Pod) {}, key: key{Namespace: "ns", Name: "p"}},
		{name: "completed", edit: func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }, key: key{Namespace: "ns", Name: "p"}},
		{name: "terminating", edit: func(p *corev1.Pod) {
			p.DeletionTimestamp = &metav1.Time{Time: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
		}, key: key{Namespace: "ns", Name: "p"}},
		{name: "deleted", key: key{UID: "uid-p"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
			f.mustSync("ns", "p")
			if tc.edit != nil {
				f.update("ns", "p", func(p *corev1.Pod) { tc.edit(p) })
			} else {
				f.deletePod("ns", "p")
			}
			f.ctrl.checkpoints = brokenCheckpoints{Checkpoints: f.store, listErr: errors.New("checkpoints: permission denied")}
			f.refresh()
			if err := f.ctrl.sync(f.ctx, tc.key); err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Fatalf("err %v, want the listing's", err)
			}
			if tc.edit != nil {
				f.expectEvent("Warning", ReasonCheckpointFailed, "permission denied")
			}
			f.expectCalls("ADD ns/p net1 a")
		})
	}
	f := newFixture(t, nil, nil)
	f.ctrl.checkpoints = brokenCheckpoints{Checkpoints: f.store, podsErr: errors.New("checkpoints: permission denied")}
	f.ctrl.enqueueOrphans(f.ctx)
	if n := f.ctrl.releases.Len(); n != 0 {
		t.Fatalf("%d releases queued", n)
	}
}

// A deleted pod whose DEL fails because Multus needs the pod object is not retried (nothing
// can bring the object back): its record stays for a release by hand.
func TestSyncOrphanWhoseDELNeedsThePodIsNotRetried(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	f.mustSync("ns", "p")
	f.delegate.failNext("DEL", -1, fmt.Errorf("delegate DEL: %w", multus.ErrPodNotFound))
	f.deletePod("ns", "p")
	if err := f.ctrl.sync(f.ctx, key{UID: "uid-p"}); err != nil {
		t.Fatalf("err %v, want no retry", err)
	}
	f.expectCalls("ADD ns/p net1 a", "DEL ns/p net1 a")
	if r := f.records("uid-p"); len(r) != 1 {
		t.Fatalf("records %+v, want net1's kept", r)
	}
}
