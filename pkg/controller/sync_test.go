package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadfake "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2/ktesting"

	"github.com/netplug/netplug/pkg/apitest"
	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/cri"
	"github.com/netplug/netplug/pkg/executor"
	"github.com/netplug/netplug/pkg/multus"
	"github.com/netplug/netplug/pkg/podwriter"
)

// fixture drives the controller one key at a time, in the style of sample-controller: the
// clientsets and the listers are seeded with the same objects, sync runs synchronously, and the
// test compares the recorded API actions, Multus calls, records and events.
type fixture struct {
	t        *testing.T
	ctx      context.Context
	kube     *fake.Clientset
	nads     *nadfake.Clientset
	runtime  *fakeRuntime
	delegate *fakeDelegate
	store    *checkpoint.Store
	dir      string
	recorder *record.FakeRecorder
	ctrl     *Controller
	now      time.Time
	// seen are the events drained so far (events, expectEvent).
	seen []string
}

func newFixture(t *testing.T, pods []*corev1.Pod, nads []*nadv1.NetworkAttachmentDefinition, opts ...envOption) *fixture {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	f := &fixture{t: t, ctx: ctx, kube: fake.NewClientset(), nads: nadfake.NewSimpleClientset(),
		runtime: &fakeRuntime{sandboxes: map[string]cri.Sandbox{}}, delegate: newFakeDelegate(),
		dir: filepath.Join(t.TempDir(), "checkpoints"), recorder: record.NewFakeRecorder(1000),
		now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	apitest.EnforceResourceVersion(f.kube, "pods")
	for _, p := range pods {
		if _, err := f.kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		f.runtime.set(string(p.UID), sandboxFor(p.UID))
	}
	for _, n := range nads {
		if _, err := f.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(n.Namespace).Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f.open(opts...)
	return f
}

// open (re)creates the store and the controller over the fixture's state, like a restart.
func (f *fixture) open(opts ...envOption) {
	f.t.Helper()
	if f.store != nil {
		_ = f.store.Close()
	}
	store, err := checkpoint.Open(f.ctx, f.dir)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = store.Close() })
	o := Options{NodeName: node, Workers: 1, Now: func() time.Time { return f.now }}
	for _, opt := range opts {
		opt(&o)
	}
	ctrl, err := New(o, f.kube, f.nads, f.runtime, executor.New(f.delegate, store), podwriter.NewWriter(f.kube, time.Second), store, f.recorder)
	if err != nil {
		f.t.Fatal(err)
	}
	f.store, f.ctrl = store, ctrl
}

// refresh makes the listers show what the API holds, as synced informers would.
func (f *fixture) refresh() {
	f.t.Helper()
	pods, err := f.kube.CoreV1().Pods("").List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var objs []interface{}
	for i := range pods.Items {
		objs = append(objs, &pods.Items[i])
	}
	if err := f.ctrl.podInformer.GetIndexer().Replace(objs, ""); err != nil {
		f.t.Fatal(err)
	}
	nads, err := f.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions("").List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	objs = nil
	for i := range nads.Items {
		objs = append(objs, &nads.Items[i])
	}
	if err := f.ctrl.nadInformer.GetIndexer().Replace(objs, ""); err != nil {
		f.t.Fatal(err)
	}
}

// sync reconciles one pod now.
func (f *fixture) sync(ns, name string) error {
	f.t.Helper()
	f.refresh()
	return f.ctrl.sync(f.ctx, key{Namespace: ns, Name: name})
}

func (f *fixture) mustSync(ns, name string) {
	f.t.Helper()
	if err := f.sync(ns, name); err != nil {
		f.t.Fatalf("sync %s/%s: %v; calls %v; events %v", ns, name, err, f.delegate.callLog(), f.events())
	}
}

func (f *fixture) pod(ns, name string) *corev1.Pod {
	f.t.Helper()
	p, err := f.kube.CoreV1().Pods(ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fixture) update(ns, name string, edit func(*corev1.Pod)) {
	f.t.Helper()
	p := f.pod(ns, name)
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	edit(p)
	if _, err := f.kube.CoreV1().Pods(ns).Update(f.ctx, p, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) annotate(ns, name, networks string) {
	f.update(ns, name, func(p *corev1.Pod) { p.Annotations[nadv1.NetworkAttachmentAnnot] = networks })
}

// events drains the events recorded since the last call.
func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			f.seen = append(f.seen, out...)
			return out
		}
	}
}

// expectEvent fails unless an event recorded so far contains every substring.
func (f *fixture) expectEvent(substr ...string) {
	f.t.Helper()
	f.events()
	if !hasEvent(f.seen, substr...) {
		f.t.Fatalf("no event with %q in %v", substr, f.seen)
	}
}

// expectCalls fails unless the Multus calls so far are exactly want, in order.
func (f *fixture) expectCalls(want ...string) {
	f.t.Helper()
	if got := f.delegate.callLog(); !slices.Equal(got, want) {
		f.t.Fatalf("multus calls\n%v\nwant\n%v", got, want)
	}
}

// converged fails unless the pod's network-status lists exactly status and its sandbox holds
// exactly links ("ifname=network", sorted).
func (f *fixture) converged(ns, name string, status, links []string) {
	f.t.Helper()
	if got := f.statusOf(ns, name); !slices.Equal(got, status) {
		f.t.Fatalf("%s/%s status %v, want %v", ns, name, got, status)
	}
	if got := f.delegate.linksOf(sandboxFor(f.pod(ns, name).UID).NetNS); !slices.Equal(got, links) {
		f.t.Fatalf("%s/%s links %v, want %v", ns, name, got, links)
	}
}

// settled fails unless the pod's records are exactly of ifaces, none in flight.
func (f *fixture) settled(uid string, ifaces ...string) {
	f.t.Helper()
	var got []string
	for _, e := range f.records(uid) {
		if e.InFlight != "" {
			f.t.Fatalf("record of %s still in flight (%s)", e.Interface, e.InFlight)
		}
		got = append(got, e.Interface)
	}
	if !slices.Equal(got, ifaces) {
		f.t.Fatalf("records of %v, want %v", got, ifaces)
	}
}

// refuseStatusWrites makes the API server answer the next n network-status patches (n < 0:
// all of them, until allowStatusWrites) with err; the finalizer's patches go through. It
// returns how many it refused so far.
func (f *fixture) refuseStatusWrites(n int, err error) func() int {
	var mu sync.Mutex
	refused := 0
	f.kube.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if isStatusPatch(a) && (n < 0 || refused < n) {
			refused++
			return true, nil, err
		}
		return false, nil, nil
	})
	return func() int { mu.Lock(); defer mu.Unlock(); return refused }
}

// allowStatusWrites undoes the last refuseStatusWrites.
func (f *fixture) allowStatusWrites() { f.kube.ReactionChain = f.kube.ReactionChain[1:] }

// isStatusPatch tells the network-status merge patch from the finalizer's strategic merge patch.
func isStatusPatch(a k8stesting.Action) bool {
	p, ok := a.(k8stesting.PatchAction)
	return ok && p.GetPatchType() == types.MergePatchType
}

// statusWrites counts the recorded patches that write network-status.
func (f *fixture) statusWrites() int {
	n := 0
	for _, a := range f.kube.Actions() {
		if isStatusPatch(a) && strings.Contains(string(a.(k8stesting.PatchAction).GetPatch()), nadv1.NetworkStatusAnnot) {
			n++
		}
	}
	return n
}

// process hands the next key of q to the worker's loop body, as a worker would.
func (f *fixture) process(q workqueue.TypedRateLimitingInterface[key]) {
	f.t.Helper()
	f.refresh()
	if !f.ctrl.processNext(f.ctx, q) {
		f.t.Fatal("processNext stopped")
	}
}

func (f *fixture) deletePod(ns, name string) *corev1.Pod {
	f.t.Helper()
	p := f.pod(ns, name)
	if err := f.kube.CoreV1().Pods(ns).Delete(f.ctx, name, metav1.DeleteOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
	return p
}

func hasEvent(events []string, substr ...string) bool {
	return slices.ContainsFunc(events, func(e string) bool {
		for _, s := range substr {
			if !strings.Contains(e, s) {
				return false
			}
		}
		return true
	})
}

func (f *fixture) records(uid string) []checkpoint.Entry {
	f.t.Helper()
	l, err := f.store.List(uid)
	if err != nil {
		f.t.Fatal(err)
	}
	return l.Entries
}

func (f *fixture) statusOf(ns, name string) []string {
	f.t.Helper()
	return secondaryNames(f.t, f.pod(ns, name))
}

// podPatches counts the pod patches recorded since the last call.
func (f *fixture) podPatches() int {
	n := 0
	for _, a := range f.kube.Actions() {
		if a.GetVerb() == "patch" && a.GetResource().Resource == "pods" {
			n++
		}
	}
	f.kube.ClearActions()
	return n
}

// brokenCheckpoints fails listing the records of pod of (every pod when empty) with listErr,
// and listing the pods with podsErr.
type brokenCheckpoints struct {
	Checkpoints
	listErr, podsErr error
	of               string
}

func (b brokenCheckpoints) List(uid string) (checkpoint.Listing, error) {
	if b.listErr != nil && (b.of == "" || b.of == uid) {
		return checkpoint.Listing{}, b.listErr
	}
	return b.Checkpoints.List(uid)
}

func (b brokenCheckpoints) Pods() ([]string, error) {
	if b.podsErr != nil {
		return nil, b.podsErr
	}
	return b.Checkpoints.Pods()
}

func withStatus(p *corev1.Pod, status string) *corev1.Pod {
	p.Annotations[nadv1.NetworkStatusAnnot] = status
	return p
}

const podnetStatus = `{"name":"podnet","interface":"eth0","ips":["10.244.0.185"],"default":true}`

// Item 1: asking for a name the pod already has (its default interface) is refused before any
// call; before the fix the ADD failed, and the next reconcile DELed eth0.
func TestSyncRefusesTheDefaultInterfaceName(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{withStatus(runningPod("ns", "p", `[{"name":"a","interface":"eth0"}]`), "["+podnetStatus+"]")}, nads("ns/a"))
	for i := 0; i < 2; i++ {
		f.mustSync("ns", "p")
	}
	if calls := f.delegate.callLog(); len(calls) != 0 {
		t.Fatalf("multus was called: %v", calls)
	}
	if ev := f.events(); !hasEvent(ev, "Warning", ReasonInterfaceInUse, "eth0", "default network") {
		t.Fatalf("events %v", ev)
	}
	if r := f.records("uid-p"); len(r) != 0 || podwriter.HasFinalizer(f.pod("ns", "p")) {
		t.Fatalf("records %v, finalizers %v", r, f.pod("ns", "p").Finalizers)
	}
}

// Item 1: a name Multus refuses because it exists (a link no status lists) counts as nothing
// created: no DEL follows, on this reconcile or the next.
func TestSyncAddOfAnExistingNameIsNeverUndone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@data0")}, nads("ns/a"))
	f.delegate.links[sandboxFor("uid-p").NetNS] = map[string]multus.Request{"data0": {Config: []byte(`{"name":"theirs"}`)}}
	if err := f.sync("ns", "p"); err != nil {
		t.Fatalf("a refused name is retried with backoff: %v", err)
	}
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD ns/p data0 a", "ADD ns/p data0 a"}) {
		t.Fatalf("calls %v, want ADDs only", calls)
	}
	if got := f.delegate.linksOf(sandboxFor("uid-p").NetNS); !slices.Equal(got, []string{"data0=theirs"}) {
		t.Fatalf("links %v", got)
	}
	if ev := f.events(); !hasEvent(ev, "Warning", ReasonInterfaceInUse, "data0") {
		t.Fatalf("events %v", ev)
	}
	if r := f.records("uid-p"); len(r) != 0 {
		t.Fatalf("records left for an ADD that created nothing: %+v", r)
	}
	if p := f.pod("ns", "p"); podwriter.HasFinalizer(p) {
		t.Fatalf("finalizer left: %v", p.Finalizers)
	}
}

// Item 2: the finalizer goes with the last unplug, in the same single patch as the status.
func TestSyncFinalizerGoesWithTheLastUnplug(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	f.podPatches()
	f.mustSync("ns", "p")
	if !podwriter.HasFinalizer(f.pod("ns", "p")) {
		t.Fatal("no finalizer while an interface is plugged")
	}
	if n := f.podPatches(); n != 2 {
		t.Fatalf("%d pod patches for the first plug, want 2 (finalizer before the ADD, then status)", n)
	}
	f.annotate("ns", "p", "")
	f.podPatches()
	f.mustSync("ns", "p")
	p := f.pod("ns", "p")
	if podwriter.HasFinalizer(p) || len(f.statusOf("ns", "p")) != 0 {
		t.Fatalf("after the last unplug: finalizers %v, status %v", p.Finalizers, f.statusOf("ns", "p"))
	}
	if n := f.podPatches(); n != 1 {
		t.Fatalf("%d pod patches for the unplug, want 1", n)
	}
	if r := f.records("uid-p"); len(r) != 0 {
		t.Fatalf("records %+v", r)
	}
}

// Item 3: an interface whose name looks like the store's own temporary files is recorded,
// survives a restart, and is released when its pod goes.
func TestSyncDotNamedInterfaceIsReleased(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", `[{"name":"a","interface":".tmp-a"}]`)}, nads("ns/a"))
	f.mustSync("ns", "p")
	f.open() // a restart: the store is opened again and cleans its temporary files
	if err := f.kube.CoreV1().Pods("ns").Delete(f.ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	if err := f.ctrl.sync(f.ctx, key{UID: "uid-p"}); err != nil {
		t.Fatal(err)
	}
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD ns/p .tmp-a a", "DEL ns/p .tmp-a a"}) {
		t.Fatalf("calls %v", calls)
	}
}

// Item 4: a field hot-plug cannot carry out refuses the element, naming the field.
func TestSyncRefusesUnsupportedFields(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", `[{"name":"a","default-route":["10.231.0.1"]},{"name":"a","interface":"net5"}]`)}, nads("ns/a"))
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD ns/p net5 a"}) {
		t.Fatalf("calls %v", calls)
	}
	if ev := f.events(); !hasEvent(ev, "Warning", ReasonUnsupportedField, `"default-route"`) {
		t.Fatalf("events %v", ev)
	}
}

// Item 5: interfaces netplug did not plug and no selection asked for (Multus defaultNetworks,
// other writers) are never unplugged, whatever the selection does.
func TestSyncNeverUnplugsWhatItDoesNotOwn(t *testing.T) {
	t.Parallel()
	status := "[" + podnetStatus + `,{"name":"kube-system/dn","interface":"net1","ips":["10.99.0.2"]}]`
	f := newFixture(t, []*corev1.Pod{withStatus(runningPod("ns", "p", ""), status)}, nads("ns/a"))
	f.mustSync("ns", "p")
	f.annotate("ns", "p", "a")
	f.mustSync("ns", "p")
	f.annotate("ns", "p", "[]")
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD ns/p net2 a", "DEL ns/p net2 a"}) {
		t.Fatalf("calls %v", calls)
	}
	if got := f.statusOf("ns", "p"); !slices.Equal(got, []string{"kube-system/dn@net1"}) {
		t.Fatalf("status %v", got)
	}
}

// Item 5: an interface Multus attached for a selection element netplug saw is adopted, with no
// call and no finalizer, and unplugged once the selection drops it.
func TestSyncAdoptsWhatTheSelectionAskedFor(t *testing.T) {
	t.Parallel()
	status := "[" + podnetStatus + `,{"name":"ns/a","interface":"net1","ips":["10.9.9.9"]}]`
	f := newFixture(t, []*corev1.Pod{withStatus(runningPod("ns", "p", "a"), status)}, nads("ns/a"))
	f.mustSync("ns", "p")
	r := f.records("uid-p")
	if len(r) != 1 || !r[0].Adopted || len(f.delegate.callLog()) != 0 || podwriter.HasFinalizer(f.pod("ns", "p")) {
		t.Fatalf("records %+v, calls %v, finalizers %v", r, f.delegate.callLog(), f.pod("ns", "p").Finalizers)
	}
	f.annotate("ns", "p", "")
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"DEL ns/p net1 a"}) {
		t.Fatalf("calls %v", calls)
	}
}

// Item 6: a DEL that fails forever holds the pod only until the deadline; then the finalizer
// goes with a Warning and the record stays for a later clean-up.
func TestSyncFinalizerHasADeadline(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"), func(o *Options) { o.FinalizerTimeout = 5 * time.Minute })
	f.mustSync("ns", "p")
	f.delegate.failNext("DEL", -1, errors.New("plugin broken"))
	// Deleted: the API server keeps a pod with finalizers and sets its deletion deadline (the
	// fake clientset does not, so the test does).
	f.update("ns", "p", func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: f.now} })
	delete(f.runtime.sandboxes, "uid-p") // the sandbox has stopped
	if err := f.sync("ns", "p"); err == nil {
		t.Fatal("a failed release before the deadline must be retried")
	}
	if !podwriter.HasFinalizer(f.pod("ns", "p")) {
		t.Fatal("finalizer removed before the deadline")
	}
	f.now = f.now.Add(6 * time.Minute)
	f.mustSync("ns", "p")
	if podwriter.HasFinalizer(f.pod("ns", "p")) {
		t.Fatal("finalizer still there after the deadline")
	}
	if ev := f.events(); !hasEvent(ev, "Warning", ReasonReleaseDeadline) {
		t.Fatalf("events %v", ev)
	}
	if r := f.records("uid-p"); len(r) != 1 {
		t.Fatalf("the record must stay for a later clean-up: %+v", r)
	}
}

// Item 8: a selection over the cap changes nothing and says why.
func TestSyncCapsElementsPerPod(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", strings.TrimSuffix(strings.Repeat("a,", 5), ","))}, nads("ns/a"),
		func(o *Options) { o.MaxNetworksPerPod = 4 })
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); len(calls) != 0 {
		t.Fatalf("calls %v", calls)
	}
	if ev := f.events(); !hasEvent(ev, "Warning", ReasonTooManyNetworks, "at most 4") {
		t.Fatalf("events %v", ev)
	}
}

// Item 9: the same MAC written another way is no change.
func TestSyncMACNotationIsNotAReplug(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", `[{"name":"a","interface":"net1","mac":"02:00:00:00:00:05"}]`)}, nads("ns/a"))
	f.mustSync("ns", "p")
	f.annotate("ns", "p", `[{"name":"a","interface":"net1","mac":"02-00-00-00-00-05"}]`)
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); len(calls) != 1 {
		t.Fatalf("calls %v, want the one ADD", calls)
	}
}

// Item 10: an unreadable record is set aside with a Warning; the pod carries on.
func TestSyncQuarantinesACorruptRecord(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	f.mustSync("ns", "p")
	if err := os.WriteFile(filepath.Join(f.dir, "uid-p", "net9.json"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f.annotate("ns", "p", "a@net1,a@net2")
	f.mustSync("ns", "p")
	if ev := f.events(); !hasEvent(ev, "Warning", ReasonCheckpointQuarantined, "net9.json") {
		t.Fatalf("events %v", ev)
	}
	if got := f.statusOf("ns", "p"); !slices.Equal(got, []string{"ns/a@net1", "ns/a@net2"}) {
		t.Fatalf("status %v", got)
	}
}

// Item 11: a reconcile starts no step past its budget; the rest continues on a requeue.
func TestSyncStopsStartingStepsPastTheBudget(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a,a,a")}, nads("ns/a"), func(o *Options) {
		o.ReconcileBudget, o.StepsInParallel = time.Second, 1 // one after another, so the fake clock is the call's
	})
	f.delegate.setFail(func(cmd string, _ multus.Request) error {
		f.now = f.now.Add(700 * time.Millisecond) // each ADD is slow
		return nil
	})
	err := f.sync("ns", "p")
	if !isRequeue(err) || requeueAfter(err) != budgetRetry {
		t.Fatalf("err %v, want a prompt requeue", err)
	}
	if calls := f.delegate.callLog(); len(calls) != 2 {
		t.Fatalf("calls %v, want two ADDs within the budget", calls)
	}
	if got := f.statusOf("ns", "p"); len(got) != 2 {
		t.Fatalf("what was done is committed: %v", got)
	}
	f.mustSync("ns", "p")
	if got := f.statusOf("ns", "p"); len(got) != 3 {
		t.Fatalf("status %v", got)
	}
}

// Item 11: terminating and completed pods go to the release queue.
func TestReleasesHaveTheirOwnQueue(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil)
	running := runningPod("ns", "p", "a")
	terminating := runningPod("ns", "t", "a")
	terminating.DeletionTimestamp = &metav1.Time{Time: f.now}
	done := runningPod("ns", "d", "a")
	done.Status.Phase = corev1.PodSucceeded
	for _, p := range []*corev1.Pod{running, terminating, done} {
		f.ctrl.enqueuePod(p)
	}
	if f.ctrl.plugs.Len() != 1 || f.ctrl.releases.Len() != 2 {
		t.Fatalf("plugs %d, releases %d", f.ctrl.plugs.Len(), f.ctrl.releases.Len())
	}
}

// Item 14: a pod that completed releases its hot-plugged addresses once its sandbox stopped.
func TestSyncReleasesCompletedPods(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	f.mustSync("ns", "p")
	f.update("ns", "p", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })
	if err := f.sync("ns", "p"); !isRequeue(err) {
		t.Fatalf("while the sandbox runs: %v, want a requeue", err)
	}
	delete(f.runtime.sandboxes, "uid-p")
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD ns/p net1 a", "DEL ns/p net1 a"}) {
		t.Fatalf("calls %v", calls)
	}
	p := f.pod("ns", "p")
	if podwriter.HasFinalizer(p) || len(f.statusOf("ns", "p")) != 0 || len(f.records("uid-p")) != 0 {
		t.Fatalf("finalizers %v, status %v, records %v", p.Finalizers, f.statusOf("ns", "p"), f.records("uid-p"))
	}
}

// Item 15: with resourceVersions enforced, a status write that races another writer is
// recomputed on the fresh pod and keeps the other writer's entry.
func TestSyncStatusWriteRacingAnotherWriter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	f.refresh()
	// Another writer lands after netplug's listers saw the pod.
	f.update("ns", "p", func(p *corev1.Pod) {
		p.Annotations[nadv1.NetworkStatusAnnot] = "[" + podnetStatus + `,{"name":"other/x","interface":"ext0"}]`
	})
	if err := f.ctrl.sync(f.ctx, key{Namespace: "ns", Name: "p"}); err != nil {
		t.Fatal(err)
	}
	if got := f.statusOf("ns", "p"); !slices.Equal(got, []string{"other/x@ext0", "ns/a@net1"}) {
		t.Fatalf("status %v", got)
	}
}

// A pod's independent steps run side by side: two ADDs are under way at once.
func TestSyncRunsAPodsStepsSideBySide(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1,a@net2")}, nads("ns/a"))
	arrived := make(chan struct{}, 2)
	both := make(chan struct{})
	f.delegate.setFail(func(cmd string, _ multus.Request) error {
		arrived <- struct{}{}
		<-both
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- f.sync("ns", "p") }()
	for i := 0; i < 2; i++ {
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("the second ADD did not start while the first was under way")
		}
	}
	close(both)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := f.statusOf("ns", "p"); !slices.Equal(got, []string{"ns/a@net1", "ns/a@net2"}) {
		t.Fatalf("status %v, want the plan's order", got)
	}
}

// The cache keeps only what a reconcile reads.
func TestTrimPodKeepsWhatReconcileReads(t *testing.T) {
	t.Parallel()
	now := metav1.Now()
	pod := runningPod("ns", "p", "a@net1")
	pod.ResourceVersion, pod.DeletionTimestamp, pod.Finalizers = "7", &now, []string{podwriter.Finalizer}
	pod.Annotations[nadv1.NetworkStatusAnnot] = "[]"
	pod.Annotations["kubectl.kubernetes.io/last-applied-configuration"] = strings.Repeat("x", 4096)
	pod.Spec.HostNetwork = true
	pool := corev1.ResourceName("netplug.io/veth")
	pod.Spec.Containers = []corev1.Container{{Name: "c", Image: "busybox"}, {Name: "nic", Image: "busybox",
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), pool: resource.MustParse("1")}}}}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	obj, err := trimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*corev1.Pod)
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: pod.UID, ResourceVersion: "7", DeletionTimestamp: &now,
			Finalizers:  []string{podwriter.Finalizer},
			Annotations: map[string]string{nadv1.NetworkAttachmentAnnot: "a@net1", nadv1.NetworkStatusAnnot: "[]"}},
		Spec: corev1.PodSpec{NodeName: node, HostNetwork: true, Containers: []corev1.Container{{Name: "nic",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{pool: resource.MustParse("1")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("trimmed\n%+v\nwant\n%+v", got, want)
	}
	if other, _ := trimPod("not a pod"); other != "not a pod" {
		t.Fatal("other objects must pass through")
	}
}

// Issue 15: an interface a DRA ResourceClaim holds (recorded with Origin "claim" by the NRI hook)
// is listed in network-status, but the annotation path never unplugs, adopts or replugs it: a
// selection that names it is refused, and dropping the selection leaves it alone.
func TestSyncNeverTouchesAClaimsInterface(t *testing.T) {
	t.Parallel()
	status := "[" + podnetStatus + `,{"name":"ns/a","interface":"net1","ips":["10.9.9.9"]}]`
	f := newFixture(t, []*corev1.Pod{withStatus(runningPod("ns", "p", ""), status)}, nads("ns/a"))
	sb := sandboxFor("uid-p")
	claim := checkpoint.Entry{PodNamespace: "ns", PodName: "p", PodUID: "uid-p", SandboxID: sb.ID, NetNS: sb.NetNS,
		Namespace: "ns", Network: "a", Interface: "net1", Config: []byte(`{"name":"a"}`), Origin: checkpoint.OriginClaim}
	if err := f.store.Save(claim); err != nil {
		t.Fatal(err)
	}
	f.mustSync("ns", "p")
	f.annotate("ns", "p", `[{"name":"a","interface":"net1"}]`)
	f.mustSync("ns", "p")
	f.annotate("ns", "p", "a")
	f.mustSync("ns", "p")
	f.annotate("ns", "p", "")
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"ADD ns/p net2 a", "DEL ns/p net2 a"}) {
		t.Fatalf("calls %v", calls)
	}
	r := f.records("uid-p")
	if len(r) != 1 || r[0].Origin != checkpoint.OriginClaim || r[0].Adopted || r[0].Interface != "net1" {
		t.Fatalf("records %+v: the claim's record must stay as the NRI hook wrote it", r)
	}
	if got := f.statusOf("ns", "p"); !slices.Equal(got, []string{"ns/a@net1"}) {
		t.Fatalf("status %v", got)
	}
	if !slices.ContainsFunc(f.events(), func(e string) bool { return strings.Contains(e, "ResourceClaim") }) {
		t.Fatalf("no refusal event naming the claim")
	}
}

// Item 8: a pod's selection is parsed once per resourceVersion, so NAD events and resyncs do
// not re-parse every pod.
func TestSelectionsAreCachedPerResourceVersion(t *testing.T) {
	t.Parallel()
	var c selectionCache
	pod := runningPod("ns", "p", "a,b")
	pod.ResourceVersion = "1"
	first, err := c.get(pod, 32)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := c.get(pod, 32)
	if &first.Attachments[0] != &again.Attachments[0] {
		t.Fatal("the same resourceVersion was parsed again")
	}
	pod.ResourceVersion, pod.Annotations[nadv1.NetworkAttachmentAnnot] = "2", "c"
	if edited, _ := c.get(pod, 32); len(edited.Attachments) != 1 || edited.Attachments[0].Network != "c" {
		t.Fatalf("an edit was served from the cache: %+v", edited)
	}
	c.forget(pod.UID)
	if len(c.entries) != 0 {
		t.Fatal("a deleted pod stays in the cache")
	}
}

// Item 5 (found by the soak): an interface Multus attached at creation because the pod asked for
// it is the pod's to remove even when the selection is edited before netplug first reconciles
// the running pod (so it was never adopted).
func TestSyncRemovesWhatThePodAskedMultusForAtCreation(t *testing.T) {
	t.Parallel()
	pod := runningPod("ns", "p", "a@net1")
	pod.Status.Phase = corev1.PodPending
	f := newFixture(t, []*corev1.Pod{pod}, nads("ns/a"))
	f.mustSync("ns", "p") // Pending: nothing to do, but netplug has seen what the pod asks for
	f.update("ns", "p", func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Annotations[nadv1.NetworkStatusAnnot] = "[" + podnetStatus + `,{"name":"ns/a","interface":"net1"}]`
		p.Annotations[nadv1.NetworkAttachmentAnnot] = "" // edited before netplug saw it run
	})
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"DEL ns/p net1 a"}) {
		t.Fatalf("calls %v", calls)
	}
	if got := f.statusOf("ns", "p"); len(got) != 0 {
		t.Fatalf("status %v", got)
	}
}

// A pod created and edited while netplug was down: netplug never saw what it asked Multus for,
// but the sandbox kept the annotations kubelet created it with. What they select is the pod's to
// remove; what they do not (a Multus default network, another writer's) stays. Found by the
// soak: an unnamed interface kept after a pod was re-created during a netplug restart.
func TestSyncRemovesWhatTheSandboxWasCreatedWith(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, createdWith string
		want              []string
	}{
		{"selected at creation", "a,b@net2", []string{"DEL ns/p net1 a"}},
		{"selected at creation, in the JSON form", `[{"name":"a"}]`, []string{"DEL ns/p net1 a"}},
		{"not selected at creation", "b@net2", nil},
		{"no selection at creation", "", nil},
		{"a malformed selection at creation", "[{", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pod := runningPod("ns", "p", "b@net2")
			pod.Annotations[nadv1.NetworkStatusAnnot] = "[" + podnetStatus +
				`,{"name":"ns/a","interface":"net1"},{"name":"ns/b","interface":"net2"}]`
			f := newFixture(t, []*corev1.Pod{pod}, nads("ns/a", "ns/b"))
			sb := sandboxFor(pod.UID)
			sb.Annotations = map[string]string{nadv1.NetworkAttachmentAnnot: tt.createdWith}
			f.runtime.set(string(pod.UID), sb)
			f.mustSync("ns", "p")
			if calls := f.delegate.callLog(); !slices.Equal(calls, tt.want) {
				t.Fatalf("calls %v, want %v", calls, tt.want)
			}
		})
	}
	// An edit to an empty selection: the pod has no record and asks for nothing, but
	// network-status still lists what it asked for at creation.
	pod := runningPod("ns", "p", "")
	pod.Annotations[nadv1.NetworkStatusAnnot] = "[" + podnetStatus + `,{"name":"ns/a","interface":"net1"}]`
	f := newFixture(t, []*corev1.Pod{pod}, nads("ns/a"))
	sb := sandboxFor(pod.UID)
	sb.Annotations = map[string]string{nadv1.NetworkAttachmentAnnot: "a"}
	f.runtime.set(string(pod.UID), sb)
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"DEL ns/p net1 a"}) {
		t.Fatalf("emptied selection: calls %v", calls)
	}
}

// What a pod asked Multus for at creation survives a netplug restart (the soak found pods
// created just before a restart and edited just after it keeping those interfaces).
func TestCreationSelectionsSurviveARestart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "created")
	before := creationSelections{dir: dir}
	pod := runningPod("ns", "p", "a,other/b")
	sel, err := attachment.ParseSelection(pod.Annotations[nadv1.NetworkAttachmentAnnot], "ns")
	if err != nil {
		t.Fatal(err)
	}
	before.saw(pod, sel)
	after := creationSelections{dir: dir} // a new process
	if got := after.of(pod.UID); !got["ns/a"] || !got["other/b"] || len(got) != 2 {
		t.Fatalf("after a restart: %v", got)
	}
	after.prune(func(types.UID) bool { return false }) // the pod went while netplug was down
	if got := (&creationSelections{dir: dir}).of(pod.UID); len(got) != 0 {
		t.Fatalf("a deleted pod's record stays: %v", got)
	}
}

// The finalizer is written before the first ADD; a refused finalizer patch plugs nothing, and
// the next reconcile adds it and plugs.
func TestSyncFinalizerBeforeTheFirstAddAndIsRetried(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1")}, nads("ns/a"))
	refused := false
	f.kube.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if !isStatusPatch(a) && !refused {
			refused = true
			return true, nil, apierrors.NewServiceUnavailable("down")
		}
		return false, nil, nil
	})
	if err := f.sync("ns", "p"); err == nil {
		t.Fatal("a refused finalizer patch is not reported")
	}
	if calls := f.delegate.callLog(); len(calls) != 0 || len(f.records("uid-p")) != 0 {
		t.Fatalf("calls %v, records %v: nothing may be plugged without the finalizer", calls, f.records("uid-p"))
	}
	f.mustSync("ns", "p")
	if !podwriter.HasFinalizer(f.pod("ns", "p")) || !slices.Equal(f.delegate.callLog(), []string{"ADD ns/p net1 a"}) {
		t.Fatalf("finalizers %v, calls %v", f.pod("ns", "p").Finalizers, f.delegate.callLog())
	}
	if ev := f.events(); !hasEvent(ev, "Warning", ReasonStatusWriteFailed, "finalizer") {
		t.Fatalf("events %v", ev)
	}
}

// One Normal event per kind of change per reconcile, naming every interface: a burst costs one
// event write per pod, not one per interface.
func TestSyncOneEventPerKindOfChange(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "a@net1,b@net2")}, nads("ns/a", "ns/b"))
	f.mustSync("ns", "p")
	var plugged []string
	for _, e := range f.events() {
		if strings.Contains(e, ReasonPlugged) {
			plugged = append(plugged, e)
		}
	}
	if len(plugged) != 1 || !strings.Contains(plugged[0], "ns/a as net1") || !strings.Contains(plugged[0], "ns/b as net2") {
		t.Fatalf("plug events %v, want one naming both interfaces", plugged)
	}
	many := make([]doneEvent, maxEventItems+3)
	for i := range many {
		many[i] = doneEvent{ReasonUnplugged, fmt.Sprintf("unplugged n%d", i)}
	}
	got := groupDone(append(many, doneEvent{ReasonPlugged, "plugged x"}))
	if len(got) != 2 || !strings.HasSuffix(got[0].message, "; and 3 more") || got[1].message != "plugged x" {
		t.Fatalf("grouped %+v", got)
	}
}

// A terminating pod whose records have no finalizer beside them (it could not be written) is
// released all the same, while its sandbox and pod object are still there.
func TestSyncReleasesATerminatingPodWithoutTheFinalizer(t *testing.T) {
	t.Parallel()
	f := newFixture(t, []*corev1.Pod{runningPod("ns", "p", "")}, nads("ns/a"))
	sb := sandboxFor("uid-p")
	rec := checkpoint.Entry{PodNamespace: "ns", PodName: "p", PodUID: "uid-p", SandboxID: sb.ID, NetNS: sb.NetNS,
		Namespace: "ns", Network: "a", Interface: "net1", Config: []byte(`{"name":"a"}`), InFlight: checkpoint.InFlightAdd}
	if err := f.store.Save(rec); err != nil {
		t.Fatal(err)
	}
	f.runtime.mu.Lock()
	delete(f.runtime.sandboxes, "uid-p") // the sandbox has stopped
	f.runtime.mu.Unlock()
	f.update("ns", "p", func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: f.now} })
	f.mustSync("ns", "p")
	if calls := f.delegate.callLog(); !slices.Equal(calls, []string{"DEL ns/p net1 a"}) || len(f.records("uid-p")) != 0 {
		t.Fatalf("calls %v, records %v", calls, f.records("uid-p"))
	}
}
