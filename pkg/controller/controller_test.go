package controller

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"

	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/cri"
	"github.com/netplug/netplug/pkg/multus"
	"github.com/netplug/netplug/pkg/status"
)

func nads(names ...string) []*nadv1.NetworkAttachmentDefinition {
	var out []*nadv1.NetworkAttachmentDefinition
	for _, n := range names {
		ns, name, _ := strings.Cut(n, "/")
		out = append(out, bridgeNAD(ns, name))
	}
	return out
}

func TestAddRemoveAndBoth(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "")}, nads("ns/a", "ns/b"))
	e.annotate("ns", "p", "a@net1")
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	e.expectEvent("Normal", ReasonPlugged, "ns/a as net1")
	// Add b and remove a in one edit.
	e.annotate("ns", "p", "b@net2")
	e.converged("ns", "p", []string{"ns/b@net2"}, []string{"net2=b"})
	e.expectEvent("Normal", ReasonUnplugged, "ns/a from net1")
	// Remove everything.
	e.annotate("ns", "p", "")
	e.converged("ns", "p", nil, nil)
	if listing, _ := e.store.List("uid-p"); len(listing.Entries) != 0 {
		t.Errorf("checkpoints left: %+v", listing.Entries)
	}
	e.settle()
	var adds, dels int
	for _, c := range e.delegate.callLog() {
		if strings.HasPrefix(c, "ADD") {
			adds++
		} else {
			dels++
		}
	}
	if adds != 2 || dels != 2 {
		t.Errorf("multus calls %v, want exactly 2 ADD and 2 DEL", e.delegate.callLog())
	}
}

func TestUnnamedElementsKeepTheirInterfaces(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "a,b,a")}, nads("ns/a", "ns/b"))
	want := []string{"ns/a@net1", "ns/b@net2", "ns/a@net3"}
	e.converged("ns", "p", want, []string{"net1=a", "net2=b", "net3=a"})
	calls := len(e.delegate.callLog())
	// Three more reconciles (resync-like updates and a restart): nothing moves.
	for i := 0; i < 3; i++ {
		p := e.pod("ns", "p")
		p.Labels = map[string]string{"round": string(rune('0' + i))}
		if _, err := e.kube.CoreV1().Pods("ns").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.settle()
		if i == 1 {
			e.restart()
			e.settle()
		}
	}
	if got := e.statusOf("ns", "p"); !slices.Equal(got, want) {
		t.Fatalf("status moved: %v", got)
	}
	if got := e.delegate.callLog(); len(got) != calls {
		t.Fatalf("extra multus calls after convergence: %v", got[calls:])
	}
	// Unplug the unnamed b: only net2 goes.
	e.annotate("ns", "p", "a,a")
	e.converged("ns", "p", []string{"ns/a@net1", "ns/a@net3"}, []string{"net1=a", "net3=a"})
}

func TestAttributeChangeIsAReplug(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", `[{"name":"a","interface":"net1","ips":["10.1.0.5/24"]}]`)}, nads("ns/a", "ns/b"))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	e.annotate("ns", "p", `[{"name":"a","interface":"net1","ips":["10.1.0.6/24"]}]`)
	e.eventually("new IP in status", func() bool {
		return strings.Contains(e.pod("ns", "p").Annotations[nadv1.NetworkStatusAnnot], "10.1.0.6")
	})
	e.annotate("ns", "p", `[{"name":"a","interface":"net1","ips":["10.1.0.6/24"],"cni-args":{"x":"y"}}]`)
	e.eventually("cni-args replug", func() bool { return len(e.delegate.callLog()) == 5 })
	// Another network on the same interface: DEL with a's config, ADD with b's.
	e.annotate("ns", "p", `[{"name":"b","interface":"net1"}]`)
	e.converged("ns", "p", []string{"ns/b@net1"}, []string{"net1=b"})
	e.settle()
	want := []string{"ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 b"}
	if got := e.delegate.callLog(); !slices.Equal(got, want) {
		t.Fatalf("calls %v\nwant  %v", got, want)
	}
	e.expectEvent(ReasonReplugged)
}

// netplug dies between the ADD of a replug and the status write (the kubelet restarts it after
// a Multus restart): network-status still describes the old link. The restarted controller must
// not take that entry for the new link (the soak found a pod whose network-status kept the old
// MAC for minutes); the in-flight checkpoint makes it replug and record the new result.
func TestReplugInterruptedBeforeTheStatusWriteIsRepluggedAgain(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", `[{"name":"a","interface":"net1","ips":["10.1.0.5/24"]}]`)}, nads("ns/a"))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	e.failStatusWrites()
	e.annotate("ns", "p", `[{"name":"a","interface":"net1","ips":["10.1.0.6/24"]}]`)
	e.eventually("the replug's ADD", func() bool { return len(e.delegate.callLog()) >= 3 })
	e.shutdown()
	e.restoreStatusWrites()
	e.start()
	netns := sandboxFor("uid-p").NetNS
	e.eventually("the status and the link agree on the new address", func() bool {
		e.delegate.mu.Lock()
		link := e.delegate.links[netns]["net1"]
		e.delegate.mu.Unlock()
		return slices.Equal(link.IPs, []string{"10.1.0.6/24"}) &&
			strings.Contains(e.pod("ns", "p").Annotations[nadv1.NetworkStatusAnnot], `"10.1.0.6"`)
	})
	e.expectSettledCheckpoints("uid-p", "net1")
}

// An interface is unplugged while the API server refuses status writes, and asked for again
// before they work (the soak's kube-apiserver restart found it): network-status still lists
// it, the link is gone. netplug must not take the stale entry for the interface: it plugs it.
func TestUnplugNotYetInStatusIsNotMistakenForAttached(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	e.failStatusWrites()
	e.annotate("ns", "p", "")
	e.eventually("the DEL", func() bool { return len(e.delegate.callLog()) >= 2 })
	e.expectEvent("Warning", ReasonStatusWriteFailed)
	e.shutdown()
	e.annotate("ns", "p", "a@net1")
	e.restoreStatusWrites()
	e.start()
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	e.expectSettledCheckpoints("uid-p", "net1")
}

// A replug from a to b whose status write never happens leaves network-status saying a while
// the checkpoint says b; the next edit (to c) must DEL the interface with b's config, or b's
// address leaks (the soak found it: host-local kept an address of a deleted pod).
func TestReplugWithoutStatusWriteDELsTheNewNetwork(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a", "ns/b", "ns/c"))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	e.failStatusWrites()
	e.annotate("ns", "p", "b@net1")
	e.eventually("the ADD of b", func() bool { return slices.Contains(e.delegate.callLog(), "ADD ns/p net1 b") })
	e.shutdown()
	e.annotate("ns", "p", "c@net1")
	e.restoreStatusWrites()
	e.start()
	e.converged("ns", "p", []string{"ns/c@net1"}, []string{"net1=c"})
	count := func(call string) int {
		n := 0
		for _, c := range e.delegate.callLog() {
			if c == call {
				n++
			}
		}
		return n
	}
	if adds, dels := count("ADD ns/p net1 b"), count("DEL ns/p net1 b"); adds != dels {
		t.Fatalf("%d ADDs of b, %d DELs with b's config; calls %v", adds, dels, e.delegate.callLog())
	}
}

// A checkpoint whose interface the cached network-status does not list may still be listed by
// the API server (a status write that landed although its answer was lost, and an informer
// that has not seen it yet; the soak found a pod left with a stale entry that way). Unplugging
// it writes its removal anyway, guarded by resourceVersion, before the checkpoint goes.
func TestUnplugOfAnUnconfirmedRecordWritesItsRemoval(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	e.shutdown()
	// The restarted controller finds net1 checkpointed but not in its view of network-status.
	p := e.pod("ns", "p")
	p.Annotations[nadv1.NetworkStatusAnnot] = `[{"name":"podnet","interface":"eth0","default":true}]`
	p.Annotations[nadv1.NetworkAttachmentAnnot] = ""
	if _, err := e.kube.CoreV1().Pods("ns").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var statusPatches atomic.Int32
	e.kube.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if isStatusPatch(a) {
			statusPatches.Add(1)
		}
		return false, nil, nil
	})
	e.start()
	e.eventually("net1 DELeted", func() bool { return slices.Contains(e.delegate.callLog(), "DEL ns/p net1 a") })
	e.expectSettledCheckpoints("uid-p")
	if statusPatches.Load() == 0 {
		t.Fatal("the removal of net1 was not written to network-status before its checkpoint went")
	}
}

// Asked to stop (SIGTERM) while an ADD is under way, the controller finishes that reconcile,
// status write and checkpoint included, before it exits: a half-done reconcile leaves states
// the next process cannot tell apart (the soak found drift after a graceful stop).
func TestStopFinishesTheReconcileUnderWay(t *testing.T) {
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
	time.Sleep(50 * time.Millisecond) // the stop request is in
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

func TestMissingNADThenCreated(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "a@net1,late@net2")}, nads("ns/a"))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	e.expectEvent("Warning", ReasonNetworkNotFound, "ns/late")
	if _, err := e.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions("ns").Create(context.Background(), bridgeNAD("ns", "late"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.converged("ns", "p", []string{"ns/a@net1", "ns/late@net2"}, []string{"net1=a", "net2=late"})
}

func TestOneFailingElementDoesNotBlockTheOthers(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", ""), runningPod("ns", "q", "a@net1")}, nads("ns/a", "ns/b", "ns/c"))
	e.converged("ns", "q", []string{"ns/a@net1"}, []string{"net1=a"})
	var failures int
	e.delegate.setFail(func(cmd string, r multus.Request) error {
		if cmd == "ADD" && networkOf(r) == "b" && failures < 3 {
			failures++
			return &multus.DaemonError{StatusCode: 400, Message: "bridge: IP address conflict"}
		}
		return nil
	})
	e.annotate("ns", "p", "a@net1,b@net2,c@net3")
	e.converged("ns", "p", []string{"ns/a@net1", "ns/c@net3", "ns/b@net2"}, []string{"net1=a", "net2=b", "net3=c"})
	e.expectEvent("Warning", ReasonPlugFailed, "ns/b as net2", "IP address conflict")
	// The retries DEL what a failed ADD may have left, then ADD again; the other pod is untouched.
	if got := e.statusOf("ns", "q"); !slices.Equal(got, []string{"ns/a@net1"}) {
		t.Errorf("other pod changed: %v", got)
	}
}

func TestStatusWriteConflictIsRetried(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "")}, nads("ns/a"))
	conflicts := 0
	e.kube.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if isStatusPatch(a) && conflicts < 2 {
			conflicts++
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "p", errors.New("changed"))
		}
		return false, nil, nil
	})
	e.annotate("ns", "p", "a@net1")
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	e.settle()
	if conflicts != 2 {
		t.Fatalf("%d conflicts", conflicts)
	}
	if got := e.delegate.callLog(); !slices.Equal(got, []string{"ADD ns/p net1 a"}) {
		t.Fatalf("a conflict must not replug: %v", got)
	}
}

// A status write that fails for good leaves the interface checkpointed but unconfirmed: the
// retry replugs it (DEL + ADD) to learn its result, and never adds a duplicate.
func TestStatusWriteFailureRecovers(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "")}, nads("ns/a"))
	failures := 0
	e.kube.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if isStatusPatch(a) && failures < 1 {
			failures++
			return true, nil, apierrors.NewServiceUnavailable("apiserver restarting")
		}
		return false, nil, nil
	})
	e.annotate("ns", "p", "a@net1")
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	e.settle()
	if got := e.delegate.callLog(); !slices.Equal(got, []string{"ADD ns/p net1 a", "DEL ns/p net1 a", "ADD ns/p net1 a"}) {
		t.Fatalf("calls %v", got)
	}
	e.expectEvent("Warning", ReasonStatusWriteFailed)
}

func TestPendingThenRunning(t *testing.T) {
	p := runningPod("ns", "p", "a@net1")
	p.Status.Phase = corev1.PodPending
	e := newEnv(t, []*corev1.Pod{p}, nads("ns/a"))
	e.settle()
	if got := e.delegate.callLog(); len(got) != 0 {
		t.Fatalf("acted on a pending pod: %v", got)
	}
	running := e.pod("ns", "p")
	running.Status.Phase = corev1.PodRunning
	if _, err := e.kube.CoreV1().Pods("ns").UpdateStatus(context.Background(), running, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
}

func TestRunningWithoutReadySandboxIsRetried(t *testing.T) {
	e := newEnv(t, nil, nads("ns/a"))
	p := runningPod("ns", "p", "a@net1")
	if _, err := e.kube.CoreV1().Pods("ns").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("sandbox lookups", func() bool { e.runtime.mu.Lock(); defer e.runtime.mu.Unlock(); return e.runtime.calls >= 3 })
	e.runtime.set(string(p.UID), sandboxFor(p.UID))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
}

func TestHostNetworkPodIsRefused(t *testing.T) {
	p := runningPod("ns", "p", "a@net1")
	p.Spec.HostNetwork = true
	e := newEnv(t, []*corev1.Pod{p}, nads("ns/a"))
	e.expectEvent("Warning", ReasonHostNetwork)
	e.settle()
	if got := e.delegate.callLog(); len(got) != 0 {
		t.Fatalf("plugged into a host-network pod: %v", got)
	}
}

func TestNamespaceIsolation(t *testing.T) {
	isolated := func(o *Options) {
		o.NamespaceIsolation = true
		o.IsGlobalNamespace = func(ns string) bool { return ns == "global" }
	}
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "other/x@net1,global/g@net2,a@net3")}, nads("ns/a", "other/x", "global/g"), isolated)
	e.converged("ns", "p", []string{"global/g@net2", "ns/a@net3"}, []string{"net2=g", "net3=a"})
	e.expectEvent("Warning", ReasonIsolation, "other/x")
	e.settle()
	// A refusal is final until the annotation or the config changes: it is not retried.
	if n := len(e.events.snapshot()); n > 6 {
		t.Fatalf("%d events: the refusal was retried: %v", n, e.events.snapshot())
	}
}

func TestMalformedAnnotationChangesNothing(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	for _, bad := range []string{`[{"name":`, `[{"name":"a","interface":"net1"},{"name":"a","interface":"net1"}]`, `[{"name":"a","interface":"bad/name"}]`} {
		e.annotate("ns", "p", bad)
		e.settle()
		if got := e.statusOf("ns", "p"); !slices.Equal(got, []string{"ns/a@net1"}) {
			t.Fatalf("%s: status changed to %v", bad, got)
		}
	}
	for _, reason := range []string{ReasonInvalidSelection, "DuplicateInterface", "InvalidInterfaceName"} {
		e.expectEvent("Warning", reason)
	}
	if got := e.delegate.callLog(); len(got) != 1 {
		t.Fatalf("bad input caused multus calls: %v", got)
	}
}

func TestPodsOfOtherNodesAreIgnored(t *testing.T) {
	other := runningPod("ns", "elsewhere", "a@net1")
	other.Spec.NodeName = "node-b"
	e := newEnv(t, []*corev1.Pod{other, runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	e.settle()
	if got := e.statusOf("ns", "elsewhere"); len(got) != 0 {
		t.Fatalf("touched another node's pod: %v", got)
	}
	for _, c := range e.delegate.callLog() {
		if strings.Contains(c, "elsewhere") {
			t.Fatalf("multus call for another node's pod: %s", c)
		}
	}
}

func TestDeletedPodIsReleasedEvenAfterARestart(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "a@net1,a@net2"), runningPod("ns", "q", "a@net1")}, nads("ns/a"))
	e.converged("ns", "p", []string{"ns/a@net1", "ns/a@net2"}, []string{"net1=a", "net2=a"})
	e.converged("ns", "q", []string{"ns/a@net1"}, []string{"net1=a"})
	// While running: a delete event releases the pod's interfaces.
	if err := e.kube.CoreV1().Pods("ns").Delete(context.Background(), "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("p released", func() bool { return len(e.delegate.linksOf(sandboxFor("uid-p").NetNS)) == 0 })
	// While down: the controller finds q's leftovers at start.
	e.shutdown()
	if err := e.kube.CoreV1().Pods("ns").Delete(context.Background(), "q", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.start()
	e.eventually("q released", func() bool { return len(e.delegate.linksOf(sandboxFor("uid-q").NetNS)) == 0 })
	e.eventually("checkpoints gone", func() bool { pods, _ := e.store.Pods(); return len(pods) == 0 })
}

// The controller died between the ADD and the status write: the restart finds the checkpoint,
// replugs once, and does not add a second interface.
func TestCrashBetweenAddAndStatusWrite(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "")}, nads("ns/a"))
	e.failStatusWrites()
	e.annotate("ns", "p", "a@net1")
	e.eventually("first ADD", func() bool { return len(e.delegate.callLog()) >= 1 })
	e.shutdown()
	e.restoreStatusWrites()
	e.start()
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
}

// Multus dies during a DEL, after the link is gone (the soak found it): the DEL fails, and the
// user asks for the interface again before any retry. netplug must not trust network-status,
// which still lists it: the interface is replugged, not assumed, and comes back.
func TestInterruptedUnplugIsNotMistakenForAttached(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	netns := sandboxFor("uid-p").NetNS
	e.delegate.setFail(func(cmd string, r multus.Request) error {
		if cmd == "DEL" {
			delete(e.delegate.links[netns], r.IfName) // the link went before the daemon died
			return errors.New("EOF")
		}
		return nil
	})
	e.annotate("ns", "p", "")
	e.expectEvent("Warning", ReasonUnplugFailed, "ns/a from net1", "EOF")
	if got := e.statusOf("ns", "p"); !slices.Equal(got, []string{"ns/a@net1"}) {
		t.Fatalf("status = %v, want net1 still listed after a failed DEL", got)
	}
	if listing, _ := e.store.List("uid-p"); len(listing.Entries) != 1 || listing.Entries[0].InFlight != checkpoint.InFlightDel {
		t.Fatalf("checkpoints %+v, want net1 marked in flight for a DEL", listing.Entries)
	}
	e.shutdown() // and the controller restarts meanwhile: the mark is on disk
	e.delegate.setFail(nil)
	e.annotate("ns", "p", "a@net1")
	e.start()
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	e.expectSettledCheckpoints("uid-p", "net1")
}

func TestSandboxRecreatedReleasesOldInterfaces(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	// The sandbox is recreated: Multus attached the annotation's networks to the new one and
	// rewrote network-status; the old netns (and its net1) is gone, its IPAM allocation is not.
	e.runtime.set("uid-p", cri.Sandbox{ID: "sb-new", NetNS: "/var/run/netns/new"})
	e.delegate.mu.Lock()
	e.delegate.links["/var/run/netns/new"] = map[string]multus.Request{"net1": {Config: []byte(`{"name":"a"}`)}}
	e.delegate.mu.Unlock()
	p := e.pod("ns", "p")
	p.Labels = map[string]string{"sandbox": "new"}
	if _, err := e.kube.CoreV1().Pods("ns").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("old sandbox released", func() bool { return len(e.delegate.linksOf(sandboxFor("uid-p").NetNS)) == 0 })
	e.eventually("checkpoint of the old sandbox removed", func() bool { got, _ := e.store.List("uid-p"); return len(got.Entries) == 0 })
	e.settle()
	if got := e.delegate.linksOf("/var/run/netns/new"); !slices.Equal(got, []string{"net1=a"}) {
		t.Fatalf("new sandbox links %v", got)
	}
	if got := e.delegate.callLog(); !slices.Equal(got, []string{"ADD ns/p net1 a", "DEL ns/p net1 a"}) {
		t.Fatalf("calls %v", got)
	}
}

// An interface Multus attached at pod creation has no checkpoint: it is unplugged with the
// NAD's config, or, when the NAD is gone, left in place with a warning.
func TestUnplugOfAnInterfaceMultusAttached(t *testing.T) {
	withStatus := func(name string) *corev1.Pod {
		p := runningPod("ns", name, "a@net1")
		p.Annotations[nadv1.NetworkStatusAnnot] = `[{"name":"podnet","interface":"eth0","default":true},{"name":"ns/a","interface":"net1","ips":["10.9.9.9"]}]`
		return p
	}
	e := newEnv(t, []*corev1.Pod{withStatus("p"), withStatus("q")}, nads("ns/a"))
	for _, uid := range []string{"uid-p", "uid-q"} {
		e.delegate.mu.Lock()
		e.delegate.links[sandboxFor(typesUID(uid)).NetNS] = map[string]multus.Request{"net1": {Config: []byte(`{"name":"a"}`)}}
		e.delegate.mu.Unlock()
	}
	e.settle()
	if got := e.delegate.callLog(); len(got) != 0 {
		t.Fatalf("an attached interface was replugged: %v", got)
	}
	e.annotate("ns", "p", "")
	e.converged("ns", "p", nil, nil)
	if err := e.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions("ns").Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("NAD gone from the cache", func() bool { _, err := e.ctrl.nads.NetworkAttachmentDefinitions("ns").Get("a"); return err != nil })
	e.annotate("ns", "q", "")
	e.expectEvent("Warning", ReasonUnplugFailed, "ns/a from net1", "not found")
	if got := e.statusOf("ns", "q"); !slices.Equal(got, []string{"ns/a@net1"}) {
		t.Fatalf("status of q = %v, want the interface still listed", got)
	}
}

func TestOrphanCleanupRetriesUntilTheDaemonAnswers(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	dels := 0
	e.delegate.setFail(func(cmd string, _ multus.Request) error {
		if cmd == "DEL" && dels < 3 {
			dels++
			return errors.New("dial unix /run/multus/multus.sock: connect: no such file or directory")
		}
		return nil
	})
	if err := e.kube.CoreV1().Pods("ns").Delete(context.Background(), "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("released after retries", func() bool { return len(e.delegate.linksOf(sandboxFor("uid-p").NetNS)) == 0 })
	e.eventually("checkpoint gone", func() bool { pods, _ := e.store.Pods(); return len(pods) == 0 })
	if dels != 3 {
		t.Fatalf("%d failed DELs, want 3", dels)
	}
}

func TestNewRequiresANodeName(t *testing.T) {
	if _, err := New(Options{}, nil, nil, nil, nil, nil, nil, nil); err == nil {
		t.Fatal("New without a node name succeeded")
	}
}

func typesUID(s string) types.UID { return types.UID(s) }

// A terminating pod keeps netplug's finalizer until its sandbox has stopped and every
// interface netplug plugged has had its DEL (Multus needs the pod object for that DEL).
func TestTerminatingPodIsReleasedBeforeItGoes(t *testing.T) {
	e := newEnv(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	e.converged("ns", "p", []string{"ns/a@net1"}, []string{"net1=a"})
	if p := e.pod("ns", "p"); !status.HasFinalizer(p) {
		t.Fatalf("no finalizer after a plug: %v", p.Finalizers)
	}
	p := e.pod("ns", "p")
	now := metav1.Now()
	p.DeletionTimestamp = &now
	if _, err := e.kube.CoreV1().Pods("ns").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.settle()
	if got := e.delegate.linksOf(sandboxFor("uid-p").NetNS); len(got) != 1 || !status.HasFinalizer(e.pod("ns", "p")) {
		t.Fatalf("released while the sandbox still runs: links %v", got)
	}
	e.runtime.mu.Lock()
	delete(e.runtime.sandboxes, "uid-p")
	e.runtime.mu.Unlock()
	e.eventually("finalizer removed", func() bool { return !status.HasFinalizer(e.pod("ns", "p")) })
	if got := e.delegate.linksOf(sandboxFor("uid-p").NetNS); len(got) != 0 {
		t.Fatalf("links left: %v", got)
	}
	if listing, _ := e.store.List("uid-p"); len(listing.Entries) != 0 {
		t.Fatalf("checkpoints left: %v", listing.Entries)
	}
}
