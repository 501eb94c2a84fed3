package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	cni100 "github.com/containernetworking/cni/pkg/types/100"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadfake "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2/ktesting"

	"github.com/netplug/netplug/pkg/apitest"
	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/cri"
	"github.com/netplug/netplug/pkg/executor"
	"github.com/netplug/netplug/pkg/multus"
	"github.com/netplug/netplug/pkg/podwriter"
)

const node = "node-a"

// fakeRuntime serves sandboxes by pod UID.
type fakeRuntime struct {
	mu        sync.Mutex
	sandboxes map[string]cri.Sandbox
	err       error
	calls     int
}

func (r *fakeRuntime) PodSandbox(_ context.Context, uid string) (cri.Sandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return cri.Sandbox{}, r.err
	}
	sb, ok := r.sandboxes[uid]
	if !ok {
		return cri.Sandbox{}, cri.ErrNoReadySandbox
	}
	return sb, nil
}

func (r *fakeRuntime) set(uid string, sb cri.Sandbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sandboxes[uid] = sb
}

// fakeDelegate is a Multus daemon that keeps the links of each netns, like the kernel would:
// an ADD of an existing name fails, as the real daemon does.
type fakeDelegate struct {
	mu    sync.Mutex
	links map[string]map[string]multus.Request // netns -> ifname -> the ADD
	calls []string                             // "ADD ns/pod net1 <network>" in order
	sent  []multus.Request                     // every request, in order
	fail  func(cmd string, r multus.Request) error
	next  int
}

func newFakeDelegate() *fakeDelegate {
	return &fakeDelegate{links: map[string]map[string]multus.Request{}}
}

func networkOf(r multus.Request) string {
	var c struct{ Name string }
	_ = json.Unmarshal(r.Config, &c)
	return c.Name
}

func (d *fakeDelegate) Add(ctx context.Context, r multus.Request) (*cni100.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, fmt.Sprintf("ADD %s/%s %s %s", r.PodNamespace, r.PodName, r.IfName, networkOf(r)))
	d.sent = append(d.sent, r)
	if fail := d.fail; fail != nil {
		d.mu.Unlock() // a test's hook may block: other calls go on meanwhile
		err := fail("ADD", r)
		d.mu.Lock()
		if err != nil {
			return nil, err
		}
	}
	if d.links[r.NetNS] == nil {
		d.links[r.NetNS] = map[string]multus.Request{}
	}
	if _, exists := d.links[r.NetNS][r.IfName]; exists {
		// The daemon's own words: it checks the name before any plugin runs.
		return nil, &multus.DaemonError{StatusCode: 500, Message: fmt.Sprintf(
			"[%s/%s:%s]: error adding container to network: validateIfName: interface name %s already exists", r.PodNamespace, r.PodName, networkOf(r), r.IfName)}
	}
	d.links[r.NetNS][r.IfName] = r
	if err := ctx.Err(); err != nil {
		return nil, err // like the real client: the daemon did the work, the answer is lost
	}
	d.next++
	ip := net.IPv4(10, 9, 0, byte(d.next))
	if len(r.IPs) > 0 {
		ip, _, _ = net.ParseCIDR(r.IPs[0])
	}
	idx := 0
	return &cni100.Result{CNIVersion: "1.0.0",
		Interfaces: []*cni100.Interface{{Name: r.IfName, Mac: "02:00:00:00:00:01", Sandbox: r.NetNS}},
		IPs:        []*cni100.IPConfig{{Interface: &idx, Address: net.IPNet{IP: ip, Mask: net.CIDRMask(24, 32)}}},
	}, nil
}

func (d *fakeDelegate) Del(_ context.Context, r multus.Request) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, fmt.Sprintf("DEL %s/%s %s %s", r.PodNamespace, r.PodName, r.IfName, networkOf(r)))
	d.sent = append(d.sent, r)
	if fail := d.fail; fail != nil {
		d.mu.Unlock()
		err := fail("DEL", r)
		d.mu.Lock()
		if err != nil {
			return err
		}
	}
	delete(d.links[r.NetNS], r.IfName) // like CNI DEL: absent is fine
	return nil
}

// lastSent is the config of the last request sent.
func (d *fakeDelegate) lastSent() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.sent) == 0 {
		return ""
	}
	return string(d.sent[len(d.sent)-1].Config)
}

// linksOf lists "ifname=network" in the netns, sorted.
func (d *fakeDelegate) linksOf(netns string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for name, r := range d.links[netns] {
		out = append(out, name+"="+networkOf(r))
	}
	slices.Sort(out)
	return out
}

func (d *fakeDelegate) callLog() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// failNext fails the next n calls of cmd (n < 0: every one) with err; it returns how many
// it failed so far.
func (d *fakeDelegate) failNext(cmd string, n int, err error) func() int {
	var mu sync.Mutex
	failed := 0
	d.setFail(func(c string, _ multus.Request) error {
		mu.Lock()
		defer mu.Unlock()
		if c != cmd || (n >= 0 && failed >= n) {
			return nil
		}
		failed++
		return err
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return failed
	}
}

func (d *fakeDelegate) setFail(f func(cmd string, r multus.Request) error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fail = f
}

type env struct {
	t        *testing.T
	ctx      context.Context
	kube     *fake.Clientset
	nads     *nadfake.Clientset
	runtime  *fakeRuntime
	delegate *fakeDelegate
	store    *checkpoint.Store
	recorder *record.FakeRecorder
	events   *eventLog
	ctrl     *Controller
	stop     context.CancelFunc
	done     chan struct{}
}

// eventLog drains the fake recorder so tests can look at every event ever emitted.
type eventLog struct {
	mu  sync.Mutex
	all []string
}

func (l *eventLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.all...)
}

type envOption func(*Options)

func newEnv(t *testing.T, objects []*corev1.Pod, nads []*nadv1.NetworkAttachmentDefinition, opts ...envOption) *env {
	t.Helper()
	kube := fake.NewClientset()
	apitest.EnforceResourceVersion(kube, "pods")
	for _, p := range objects {
		if _, err := kube.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	nadClient := nadfake.NewSimpleClientset()
	for _, n := range nads {
		if _, err := nadClient.K8sCniCncfIoV1().NetworkAttachmentDefinitions(n.Namespace).Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	store, err := checkpoint.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	e := &env{t: t, kube: kube, nads: nadClient, runtime: &fakeRuntime{sandboxes: map[string]cri.Sandbox{}},
		delegate: newFakeDelegate(), store: store, recorder: record.NewFakeRecorder(10000), events: &eventLog{}}
	for _, p := range objects {
		e.runtime.set(string(p.UID), sandboxFor(p.UID))
	}
	return e.start(opts...)
}

func sandboxFor(uid types.UID) cri.Sandbox {
	return cri.Sandbox{ID: "sb-" + string(uid), NetNS: "/var/run/netns/" + string(uid)}
}

// start (re)starts a controller over the env's state, like a process restart.
func (e *env) start(opts ...envOption) *env {
	o := Options{NodeName: node, Workers: 4, RetryBase: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond}
	for _, f := range opts {
		f(&o)
	}
	ctrl, err := New(o, e.kube, e.nads, e.runtime, executor.New(e.delegate, e.store), podwriter.NewWriter(e.kube, time.Second), e.store, e.recorder)
	if err != nil {
		e.t.Fatal(err)
	}
	_, ctx := ktesting.NewTestContext(e.t)
	ctx, cancel := context.WithCancel(ctx)
	e.ctx, e.ctrl, e.stop, e.done = ctx, ctrl, cancel, make(chan struct{})
	go func() {
		defer close(e.done)
		if err := ctrl.Run(ctx); err != nil {
			e.t.Errorf("Run: %v", err)
		}
	}()
	go func() {
		for {
			select {
			case ev := <-e.recorder.Events:
				e.events.mu.Lock()
				e.events.all = append(e.events.all, ev)
				e.events.mu.Unlock()
			case <-ctx.Done():
				return
			}
		}
	}()
	e.t.Cleanup(e.shutdown)
	e.eventually("caches synced", func() bool { return ctrl.Synced(ctx) == nil })
	return e
}

func (e *env) shutdown() {
	e.stop()
	<-e.done
}

func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s; multus calls: %v; events: %v", what, e.delegate.callLog(), e.events.snapshot())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) pod(ns, name string) *corev1.Pod {
	e.t.Helper()
	p, err := e.kube.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) annotate(ns, name, networks string) {
	e.t.Helper()
	p := e.pod(ns, name)
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[nadv1.NetworkAttachmentAnnot] = networks
	if _, err := e.kube.CoreV1().Pods(ns).Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// statusOf lists "network@interface" of the pod's non-default network-status entries.
func (e *env) statusOf(ns, name string) []string {
	e.t.Helper()
	return secondaryNames(e.t, e.pod(ns, name))
}

// secondaryNames lists "network@interface" of the pod's non-default network-status entries.
func secondaryNames(t *testing.T, pod *corev1.Pod) []string {
	t.Helper()
	entries, err := attachment.ParseNetworkStatus(pod.Annotations[nadv1.NetworkStatusAnnot])
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range entries {
		if !s.Default {
			out = append(out, s.Name+"@"+s.Interface)
		}
	}
	return out
}

func (e *env) converged(ns, name string, wantStatus []string, wantLinks []string) {
	e.t.Helper()
	p := e.pod(ns, name)
	e.eventually(fmt.Sprintf("%s/%s to have %v", ns, name, wantStatus), func() bool {
		return slices.Equal(e.statusOf(ns, name), wantStatus) && slices.Equal(e.delegate.linksOf(sandboxFor(p.UID).NetNS), wantLinks)
	})
}

func runningPod(ns, name, networks string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Annotations: map[string]string{}},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if networks != "" {
		p.Annotations[nadv1.NetworkAttachmentAnnot] = networks
	}
	return p
}

func bridgeNAD(ns, name string) *nadv1.NetworkAttachmentDefinition {
	return &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: fmt.Sprintf(`{"cniVersion":"0.4.0","name":%q,"type":"bridge"}`, name)},
	}
}
