//go:build e2e

package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/netplug/netplug/e2e/framework"
	"github.com/netplug/netplug/e2e/report"
	"github.com/netplug/netplug/pkg/checkpoint"
)

// TestSoak churns the network selections of a set of pods with random edits while faults hit
// the node (controller SIGKILL, controller absent while a pod is deleted, Multus restart, NAD
// deleted while attached, containerd restart, kube-apiserver restart) and a second writer
// rewrites network-status under netplug's feet. At the end it counts what must be zero: leaked
// IPAM allocations, stray host links, interfaces in a netns that network-status does not list
// (and the reverse), unconverged pods, duplicated or lost entries, and checks that the
// controller's goroutines and RSS stayed flat. Skipped unless NETPLUG_SOAK=1 (make soak; the CI
// runs a short version from hack/run/e2e.sh).
//
// env: SOAK_PODS=10 SOAK_CYCLES=500   pods, and edits (a pod deletion and re-creation is one)
//
//	SOAK_FAULTS=all                 or "none", or a comma list of soakFaultNames
//	SOAK_SEED=N                     the random seed (printed; set it to replay a run's edits)
//	SOAK_OUT=_out/soak.json         where the figures go as JSON
func TestSoak(t *testing.T) {
	if os.Getenv("NETPLUG_SOAK") != "1" {
		t.Skip("the soak runs with NETPLUG_SOAK=1 (make soak)")
	}
	params, err := soakParamsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	s := newSoak(t, params)
	s.run()
}

// The faults, in the order they are injected. The first three replace the controller process,
// so they come before the footprint baseline; the others must leave the process as it is.
var soakFaultNames = []string{
	"controller-kill", "controller-down", "multus-restart",
	"nad-deleted", "containerd-restart", "apiserver-restart",
}

func restartsController(fault string) bool {
	return fault == "controller-kill" || fault == "controller-down" || fault == "multus-restart"
}

const (
	// soakConverge bounds how long one pod may take to converge, faults included.
	soakConverge = 3 * time.Minute
	// soakForeignNetwork names the entry the second writer keeps in network-status: not a
	// "namespace/name" network, so nothing netplug should plug, unplug or drop.
	soakForeignNetwork = "soak-second-writer"
	// soakFlatTolerance is how much goroutines and RSS may grow between warm-up and the end.
	soakFlatTolerance = 0.10
)

func soakParamsFromEnv() (report.SoakParams, error) {
	p := report.SoakParams{Pods: 10, Cycles: 500, Faults: soakFaultNames, Seed: time.Now().UnixNano()}
	for key, dst := range map[string]*int{"SOAK_PODS": &p.Pods, "SOAK_CYCLES": &p.Cycles} {
		if v := os.Getenv(key); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return p, fmt.Errorf("%s=%q: want a positive integer", key, v)
			}
			*dst = n
		}
	}
	if p.Pods > 30 {
		return p, fmt.Errorf("SOAK_PODS=%d: at most 30 (static addresses are 8 per pod in a /24)", p.Pods)
	}
	if v := os.Getenv("SOAK_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return p, fmt.Errorf("SOAK_SEED=%q: %w", v, err)
		}
		p.Seed = n
	}
	switch v := os.Getenv("SOAK_FAULTS"); v {
	case "", "all":
	case "none":
		p.Faults = nil
	default:
		p.Faults = nil
		for _, f := range strings.Split(v, ",") {
			if !slices.Contains(soakFaultNames, f) {
				return p, fmt.Errorf("SOAK_FAULTS: unknown fault %q (known: %s)", f, strings.Join(soakFaultNames, ", "))
			}
		}
		for _, f := range soakFaultNames { // keep the injection order
			if slices.Contains(strings.Split(v, ","), f) {
				p.Faults = append(p.Faults, f)
			}
		}
	}
	p.Out = os.Getenv("SOAK_OUT")
	if p.Out == "" {
		root, err := framework.ModuleRoot()
		if err != nil {
			return p, err
		}
		p.Out = filepath.Join(root, "_out", "soak.json")
	}
	return p, nil
}

// soakPod is one pod of the soak and what was last asked of it. Its worker, and a fault that
// borrows the pod, hold mu while they act on it.
type soakPod struct {
	idx  int
	name string
	mu   sync.Mutex
	uid  types.UID
	want []framework.Element // the selection last written; nil: none
	rng  *rand.Rand
	uids []types.UID // every incarnation, to look for checkpoints left behind
}

type soak struct {
	*framework.Scenario
	params report.SoakParams
	pods   []*soakPod
	lister corelisters.PodNamespaceLister

	cycles      atomic.Int64 // edits started (a re-creation counts as one)
	doubleEdits atomic.Int64 // second edits written 0-100 ms after the first
	recreations atomic.Int64
	faultsDone  atomic.Bool
	// gate lets a measurement stop the churn: workers hold it for reading per action.
	gate sync.RWMutex

	dupes  dupeWatch
	writer secondWriter

	mu       sync.Mutex
	problems []string
	res      report.SoakResult
	// devices are the host names of the soak's pool devices (createDevices).
	devices []string
}

func newSoak(t *testing.T, params report.SoakParams) *soak {
	s := &soak{Scenario: fw.NewScenario(t, "soak"), params: params}
	s.res.Params = params
	t.Logf("soak: %d pods, %d edits, faults %v, seed %d (SOAK_SEED=%d replays the edits)",
		params.Pods, params.Cycles, params.Faults, params.Seed, params.Seed)
	for i := range params.Pods {
		s.pods = append(s.pods, &soakPod{idx: i, name: fmt.Sprintf("soak%02d", i),
			rng: rand.New(rand.NewSource(params.Seed + int64(i)))}) //nolint:gosec // reproducible test data
	}
	return s
}

// problem records something wrong found during the run; the test fails at the end, after the
// counts are printed.
func (s *soak) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.T.Logf("PROBLEM: %s", msg)
	s.mu.Lock()
	s.problems = append(s.problems, msg)
	s.mu.Unlock()
}

// ---------------------------------------------------------------------------------------------
// Networks: two host-local bridges, a static-IP bridge, a static-IP macvlan, and a host-device
// network tied to netplug's veth pool (issue 14: a device hot-plugged per element).

var soakBridges = map[string]string{"a": "npsoaka", "b": "npsoakb", "st": "npsoaks"}

func (s *soak) createNetworks() {
	s.CreateBridgeNAD("a", soakBridges["a"], "10.230.0.0/24")
	s.CreateBridgeNAD("b", soakBridges["b"], "10.230.1.0/24")
	s.CreateNAD("st", s.staticBridgeConfig())
	s.CreateNAD("mv", map[string]any{
		"type": "macvlan", "master": s.Env.MacvlanMaster, "mode": "bridge",
		"capabilities": map[string]any{"ips": true, "mac": true},
		"ipam":         map[string]any{"type": "static"},
	})
	s.CreateNAD("dv", map[string]any{"type": "host-device", "ipam": map[string]any{
		"type": "host-local", "dataDir": s.Env.IPAMDir, "ranges": []any{[]any{map[string]any{"subnet": "10.230.4.0/24"}}}}})
	nads := s.Nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(s.Ns)
	ctx, cancel := context.WithTimeout(context.Background(), framework.ApiTimeout)
	defer cancel()
	nad, err := nads.Get(ctx, "dv", metav1.GetOptions{})
	if err == nil {
		nad.Annotations = map[string]string{"k8s.v1.cni.cncf.io/resourceName": soakPool}
		_, err = nads.Update(ctx, nad, metav1.UpdateOptions{})
	}
	if err != nil {
		s.T.Fatalf("tying NAD dv to %s: %v", soakPool, err)
	}
	s.createDevices()
}

// soakPool is the local overlay's veth pool (interface prefix npdev).
const soakPool = "netplug.io/veth"

// createDevices makes one veth pair per pod for the pool (npdev5N, its peer npdp5N on the
// host): a pod's selection holds at most one dv element, so the pool is never exhausted for
// good and every pod can converge. The pairs go at the end of the test, after the pods.
func (s *soak) createDevices() {
	for i := range s.pods {
		name, peer := fmt.Sprintf("npdev5%d", i), fmt.Sprintf("npdp5%d", i)
		la := netlink.NewLinkAttrs()
		la.Name = name
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer}); err != nil {
			s.T.Fatalf("creating veth %s: %v", name, err)
		}
		s.devices = append(s.devices, name)
		s.T.Cleanup(func() {
			if l, err := netlink.LinkByName(peer); err == nil {
				_ = netlink.LinkDel(l)
			}
		})
		for _, n := range []string{name, peer} {
			l, err := netlink.LinkByName(n)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				s.T.Fatalf("setting %s up: %v", n, err)
			}
		}
	}
}

func (s *soak) staticBridgeConfig() map[string]any {
	return map[string]any{
		"type": "bridge", "bridge": soakBridges["st"],
		"capabilities": map[string]any{"ips": true},
		"ipam":         map[string]any{"type": "static"},
	}
}

// staticHost is the last octet of static address k (0..7) of pod idx: pods never share one.
func staticHost(idx, k int) int { return 10 + idx*8 + k }

// randomSelection draws 0-4 elements: networks a, b (host-local), st (static IP) and mv
// (static IP and MAC), most with an interface name from a small pool (so that the same name
// comes back with another network or address: a replug), some unnamed (netN).
func (s *soak) randomSelection(p *soakPod) []framework.Element {
	rng := p.rng
	names := []string{"sa", "sb", "sc", "sd"}
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	stSlots, mvSlots := rng.Perm(8), rng.Perm(8)
	var out []framework.Element
	device := false
	for i := range rng.Intn(5) {
		var e framework.Element
		switch r := rng.Intn(12); {
		case r >= 10 && !device:
			e.Name, device = "dv", true // at most one pool device per pod
		case r < 4 || r >= 10:
			e.Name = "a"
		case r < 7:
			e.Name = "b"
		case r < 9:
			e.Name = "st"
			e.IPs = []string{fmt.Sprintf("10.230.2.%d/24", staticHost(p.idx, stSlots[i]))}
		default:
			h := staticHost(p.idx, mvSlots[i])
			e.Name = "mv"
			e.IPs = []string{fmt.Sprintf("10.230.3.%d/24", h)}
			e.MAC = fmt.Sprintf("02:42:0a:e6:03:%02x", h)
		}
		if rng.Intn(3) > 0 {
			e.Interface = names[i]
		}
		out = append(out, e)
	}
	return out
}

// annotationValue renders a selection as users write it: JSON, or the short comma form when no
// element has attributes (sometimes), or nothing at all.
func annotationValue(rng *rand.Rand, elements []framework.Element) *string {
	if len(elements) == 0 {
		if rng.Intn(2) == 0 {
			return nil // the annotation removed
		}
		v := "[]"
		return &v
	}
	short := rng.Intn(3) == 0
	var parts []string
	for _, e := range elements {
		short = short && len(e.IPs) == 0 && e.MAC == ""
		part := e.Name
		if e.Interface != "" {
			part += "@" + e.Interface
		}
		parts = append(parts, part)
	}
	v := framework.Selection(elements...)
	if short {
		v = strings.Join(parts, ",")
	}
	return &v
}

// ---------------------------------------------------------------------------------------------
// The run.

func (s *soak) run() {
	t := s.T
	start := time.Now()
	s.createNetworks()
	hostLinksBefore := hostLinks(t)
	s.watchPods()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Cleanup(s.restoreDaemonSet) // a failed controller-down must not leave the node without netplug

	for _, p := range s.pods {
		p.mu.Lock()
		err := s.createPod(ctx, p)
		p.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range s.pods {
		if err := s.waitConverged(ctx, p); err != nil {
			t.Fatalf("initial state: %v", err)
		}
	}
	t.Logf("soak: %d pods running with their first selections after %s", len(s.pods), time.Since(start).Round(time.Millisecond))

	writerCtx, stopWriter := context.WithCancel(ctx)
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); s.runSecondWriter(writerCtx) }()

	var workers sync.WaitGroup
	for _, p := range s.pods {
		workers.Add(1)
		go func() { defer workers.Done(); s.worker(ctx, p) }()
	}
	churnStart := time.Now()
	s.runFaults(ctx)
	s.faultsDone.Store(true)
	workers.Wait()
	s.res.ChurnSeconds = report.Round2(time.Since(churnStart).Seconds())
	stopWriter()
	<-writerDone
	t.Logf("soak: churn over after %s: %d edits", time.Since(churnStart).Round(time.Second), s.cycles.Load())

	s.finalChecks(ctx)
	s.res.End = s.footprint(t, "end")
	s.deleteAllAndCount(hostLinksBefore)
	s.res.TotalSeconds = report.Round2(time.Since(start).Seconds())
	s.report()
}

// worker edits its pod until enough edits were made and every fault was injected.
func (s *soak) worker(ctx context.Context, p *soakPod) {
	for ctx.Err() == nil {
		if s.cycles.Load() >= int64(s.params.Cycles) && s.faultsDone.Load() {
			return
		}
		s.cycles.Add(1)
		s.gate.RLock()
		p.mu.Lock()
		err := s.act(ctx, p)
		p.mu.Unlock()
		s.gate.RUnlock()
		if err != nil {
			s.problem("pod %s: %v", p.name, err)
		}
	}
}

// act makes one random change to the pod: mostly an edit, sometimes two edits 0-100 ms apart,
// now and then a deletion and re-creation; then, half of the time, waits until it converged.
func (s *soak) act(ctx context.Context, p *soakPod) error {
	switch r := p.rng.Float64(); {
	case r < 0.04:
		if err := s.recreatePod(ctx, p); err != nil {
			return err
		}
	case r < 0.20:
		if err := s.edit(ctx, p); err != nil {
			return err
		}
		time.Sleep(time.Duration(p.rng.Intn(100)) * time.Millisecond)
		s.cycles.Add(1)
		s.doubleEdits.Add(1)
		if err := s.edit(ctx, p); err != nil {
			return err
		}
	default:
		if err := s.edit(ctx, p); err != nil {
			return err
		}
	}
	if p.rng.Intn(2) == 0 {
		time.Sleep(time.Duration(p.rng.Intn(300)) * time.Millisecond)
		return nil
	}
	return s.waitConverged(ctx, p)
}

// edit writes a new random selection on the pod.
func (s *soak) edit(ctx context.Context, p *soakPod) error {
	return s.setSelection(ctx, p, s.randomSelection(p))
}

// setSelection writes want as the pod's selection (in a random form).
func (s *soak) setSelection(ctx context.Context, p *soakPod, want []framework.Element) error {
	value := annotationValue(p.rng, want)
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]*string{nadv1.NetworkAttachmentAnnot: value}}})
	if err != nil {
		return err
	}
	err = s.retryAPI(ctx, "editing pod "+p.name, func(ctx context.Context) error {
		_, err := s.Kube.CoreV1().Pods(s.Ns).Patch(ctx, p.name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
	if err == nil {
		p.want = want
	}
	return err
}

// retryAPI calls fn until it succeeds, for up to soakConverge: the apiserver may be restarting.
func (s *soak) retryAPI(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	deadline := time.Now().Add(soakConverge)
	delay := 100 * time.Millisecond
	for {
		callCtx, cancel := context.WithTimeout(ctx, framework.ApiTimeout)
		err := fn(callCtx)
		cancel()
		if err == nil || apierrors.IsNotFound(err) || apierrors.IsAlreadyExists(err) || apierrors.IsInvalid(err) {
			return err
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", what, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 2*time.Second)
	}
}

// createPod creates the pod with a random first selection: Multus plugs those networks when the
// sandbox is created and writes network-status itself (the other writer), and netplug takes
// over from there. It waits until the pod runs.
func (s *soak) createPod(ctx context.Context, p *soakPod) error {
	// Multus plugs the selection at creation itself, and it can give a pod a device of the pool
	// only through the kubelet (a limit): pool devices are for running pods.
	want := slices.DeleteFunc(s.randomSelection(p), func(e framework.Element) bool { return e.Name == "dv" })
	pod := s.NewPod(p.name)
	if v := annotationValue(p.rng, want); v != nil {
		pod.Annotations = map[string]string{nadv1.NetworkAttachmentAnnot: *v}
	}
	err := s.retryAPI(ctx, "creating pod "+p.name, func(ctx context.Context) error {
		_, err := s.Kube.CoreV1().Pods(s.Ns).Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
	if err != nil && !apierrors.IsAlreadyExists(err) { // a retry after a lost answer
		return err
	}
	var created *corev1.Pod
	waitErr := s.poll(ctx, soakConverge, func(ctx context.Context) (bool, string) {
		got, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, p.name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if got.DeletionTimestamp != nil {
			return false, "the previous incarnation is still terminating"
		}
		created = got
		return got.Status.Phase == corev1.PodRunning, "phase " + string(got.Status.Phase)
	})
	if waitErr != nil {
		return fmt.Errorf("pod %s did not start: %w", p.name, waitErr)
	}
	p.uid, p.want = created.UID, want
	p.uids = append(p.uids, created.UID)
	return nil
}

// recreatePod deletes the pod, waits until it is gone (netplug has released what it plugged and
// removed its finalizer) and creates it again.
func (s *soak) recreatePod(ctx context.Context, p *soakPod) error {
	// A pool device goes back before the pod is deleted. Its release cannot wait for a deletion:
	// the kubelet tears the sandbox down (with the veth in it) within a second of a deletion
	// with grace 1, and only netplug's NRI hook holds that back, which is away for a moment
	// after the soak restarts containerd. The deletion of pods holding devices is the final
	// phase's (deleteAllAndCount) and TestDeviceHotplug/PodDeleted's.
	if keep := slices.DeleteFunc(slices.Clone(p.want), func(e framework.Element) bool { return e.Name == "dv" }); len(keep) != len(p.want) {
		if err := s.setSelection(ctx, p, keep); err != nil {
			return err
		}
		if err := s.waitConverged(ctx, p); err != nil {
			return err
		}
	}
	if err := s.waitDevicesReturned(ctx, p); err != nil {
		return err
	}
	if err := s.deletePod(ctx, p); err != nil {
		return err
	}
	if err := s.waitGone(ctx, p); err != nil {
		return err
	}
	s.recreations.Add(1)
	return s.createPod(ctx, p)
}

// waitDevicesReturned waits until netplug holds no pool device for the pod: no record of the pod
// names one. Convergence alone can pass while a reconcile of an older selection still has a
// device's ADD in flight (its record is written before the ADD), and a pod deleted then, with the
// Multus daemon down for a fault, takes the device with its sandbox: netplug can return a device
// only through Multus (README, limitations).
func (s *soak) waitDevicesReturned(ctx context.Context, p *soakPod) error {
	dir := filepath.Join(s.Env.ClusterDir, "netplug", "checkpoints", string(p.uid))
	return s.poll(ctx, soakConverge, func(context.Context) (bool, string) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, f := range files {
			var rec checkpoint.Entry
			if raw, err := os.ReadFile(f); err == nil && json.Unmarshal(raw, &rec) == nil && rec.Device != nil {
				return false, fmt.Sprintf("netplug still holds a pool device for pod %s as %s", p.name, rec.Interface)
			}
		}
		return true, ""
	})
}

func (s *soak) deletePod(ctx context.Context, p *soakPod) error {
	grace := int64(1)
	uid := p.uid
	err := s.retryAPI(ctx, "deleting pod "+p.name, func(ctx context.Context) error {
		return s.Kube.CoreV1().Pods(s.Ns).Delete(ctx, p.name, metav1.DeleteOptions{
			GracePeriodSeconds: &grace, Preconditions: &metav1.Preconditions{UID: &uid}})
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (s *soak) waitGone(ctx context.Context, p *soakPod) error {
	return s.poll(ctx, soakConverge, func(ctx context.Context) (bool, string) {
		got, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, p.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true, ""
		case err != nil:
			return false, err.Error()
		case got.UID != p.uid:
			return true, ""
		}
		return false, fmt.Sprintf("pod %s still there (finalizers %v)", p.name, got.Finalizers)
	})
}

// poll calls cond every framework.PollInterval until it is true, for at most timeout.
func (s *soak) poll(ctx context.Context, timeout time.Duration, cond func(ctx context.Context) (bool, string)) error {
	why, err := framework.Poll(ctx, framework.PollInterval, timeout, cond)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("after %s: %s", timeout, why)
}

// ---------------------------------------------------------------------------------------------
// Convergence: what the pod asks for is what network-status says and what its netns has.

// waitConverged waits until the pod converged on its last selection.
func (s *soak) waitConverged(ctx context.Context, p *soakPod) error {
	if err := s.poll(ctx, soakConverge, func(ctx context.Context) (bool, string) {
		why := s.divergence(ctx, p)
		return why == "", why
	}); err != nil {
		return fmt.Errorf("not converged on %s: %w", framework.Selection(p.want...), err)
	}
	return nil
}

// divergence says how the pod differs from its last selection, or "" when it converged.
func (s *soak) divergence(ctx context.Context, p *soakPod) string {
	pod, err := s.lister.Get(p.name)
	if err != nil {
		return err.Error()
	}
	if pod.UID != p.uid {
		return "the pod is not the one the soak created last"
	}
	if pod.Status.Phase != corev1.PodRunning {
		return "phase " + string(pod.Status.Phase)
	}
	statuses, err := soakStatus(pod)
	if err != nil {
		return err.Error()
	}
	if why := statusDivergence(s.Ns, p.want, statuses); why != "" {
		return why
	}
	links, err := s.PodLinks(ctx, pod)
	if err != nil {
		return err.Error()
	}
	inNetns, inStatus := linkMismatches(links, statuses)
	if len(inNetns)+len(inStatus) > 0 {
		return fmt.Sprintf("netns has %v that network-status lacks; network-status has %v that the netns lacks", inNetns, inStatus)
	}
	for iface, st := range statuses {
		if why := links[iface].DisagreesWith(st); why != "" {
			return why
		}
	}
	return ""
}

// soakStatus is secondaryStatus without the second writer's entry (which has no interface).
func soakStatus(pod *corev1.Pod) (map[string]nadv1.NetworkStatus, error) {
	statuses, err := framework.SecondaryStatus(pod)
	if err != nil {
		return nil, err
	}
	if st, ok := statuses[""]; ok && st.Name == soakForeignNetwork {
		delete(statuses, "")
	}
	return statuses, nil
}

var unnamedInterface = regexp.MustCompile(`^net[1-9][0-9]*$`)

// statusDivergence compares the secondary entries with the selection: every named element is
// there with its network, addresses and MAC, and the rest are netN interfaces, as many per
// network as there are unnamed elements of it.
func statusDivergence(ns string, want []framework.Element, statuses map[string]nadv1.NetworkStatus) string {
	unnamed := map[string]int{}
	named := map[string]bool{}
	for _, e := range want {
		network := ns + "/" + e.Name
		if e.Interface == "" {
			unnamed[network]++
			continue
		}
		named[e.Interface] = true
		st, ok := statuses[e.Interface]
		switch {
		case !ok:
			return fmt.Sprintf("network-status has no %s", e.Interface)
		case st.Name != network:
			return fmt.Sprintf("network-status has %s on %s, want %s", e.Interface, st.Name, network)
		case len(e.IPs) > 0 && !slices.Equal(ipsOf(st.IPs), ipsOf(e.IPs)):
			return fmt.Sprintf("network-status has %s with %v, want %v", e.Interface, st.IPs, e.IPs)
		case e.MAC != "" && !strings.EqualFold(st.Mac, e.MAC):
			return fmt.Sprintf("network-status has %s with MAC %s, want %s", e.Interface, st.Mac, e.MAC)
		}
	}
	got := map[string]int{}
	for iface, st := range statuses {
		if named[iface] {
			continue
		}
		if !unnamedInterface.MatchString(iface) {
			return fmt.Sprintf("network-status has %s (%s), which the selection does not ask for", iface, st.Name)
		}
		got[st.Name]++
	}
	for network, n := range unnamed {
		if got[network] != n {
			return fmt.Sprintf("%d unnamed interfaces on %s, want %d", got[network], network, n)
		}
	}
	for network, n := range got {
		if unnamed[network] == 0 {
			return fmt.Sprintf("%d unnamed interfaces on %s, want none", n, network)
		}
	}
	return ""
}

func ipsOf(cidrs []string) []string {
	out := make([]string, 0, len(cidrs))
	for _, c := range cidrs {
		out = append(out, framework.IpOf(c))
	}
	sort.Strings(out)
	return out
}

// linkMismatches lists the pod's links (but lo and eth0) that network-status does not list,
// and the entries that have no link.
func linkMismatches(links map[string]framework.Link, statuses map[string]nadv1.NetworkStatus) (inNetnsOnly, inStatusOnly []string) {
	for name := range links {
		if _, ok := statuses[name]; !ok && name != "lo" && name != "eth0" {
			inNetnsOnly = append(inNetnsOnly, name)
		}
	}
	for iface := range statuses {
		if _, ok := links[iface]; !ok {
			inStatusOnly = append(inStatusOnly, iface)
		}
	}
	sort.Strings(inNetnsOnly)
	sort.Strings(inStatusOnly)
	return inNetnsOnly, inStatusOnly
}

// ---------------------------------------------------------------------------------------------
// Watching every version of every pod for duplicated entries.

type dupeWatch struct {
	seen     atomic.Int64 // pod versions looked at
	dupes    atomic.Int64 // versions listing an interface (or the default network) twice
	mu       sync.Mutex
	examples []string
}

func (s *soak) watchPods() {
	t := s.T
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory := informers.NewSharedInformerFactoryWithOptions(s.Kube, 0, informers.WithNamespace(s.Ns))
	podInformer := factory.Core().V1().Pods()
	s.lister = podInformer.Lister().Pods(s.Ns)
	check := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		s.dupes.seen.Add(1)
		if why := duplicatedEntry(pod); why != "" {
			s.dupes.dupes.Add(1)
			s.dupes.mu.Lock()
			if len(s.dupes.examples) < 5 {
				s.dupes.examples = append(s.dupes.examples, fmt.Sprintf("pod %s rv %s: %s: %s", pod.Name,
					pod.ResourceVersion, why, pod.Annotations[nadv1.NetworkStatusAnnot]))
			}
			s.dupes.mu.Unlock()
		}
	}
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: check, UpdateFunc: func(_, obj any) { check(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), podInformer.Informer().HasSynced) {
		t.Fatalf("the pod watch of %s did not sync", s.Ns)
	}
}

// duplicatedEntry says which interface (or default network, or second-writer entry) a pod's
// network-status lists twice, or "".
func duplicatedEntry(pod *corev1.Pod) string {
	entries, err := framework.NetworkStatus(pod)
	if err != nil {
		return err.Error()
	}
	seen := map[string]bool{}
	for _, e := range entries {
		key := "interface " + e.Interface
		switch {
		case e.Default:
			key = "the default network"
		case e.Name == soakForeignNetwork:
			key = "the second writer's entry"
		}
		if seen[key] {
			return key + " twice"
		}
		seen[key] = true
	}
	return ""
}

// ---------------------------------------------------------------------------------------------
// The second writer: another component rewriting network-status while netplug works. It does
// what a well-behaved writer does (read, modify, write guarded by resourceVersion): keeps an
// entry of its own up to date and reorders the others. netplug must never drop its entry, undo
// its write, or duplicate anything because of it.

type secondWriter struct {
	writes, conflicts atomic.Int64
	mu                sync.Mutex
	last              map[types.UID]int // the generation last written on each pod (confirmed)
}

func soakGeneration(gen int) string { return fmt.Sprintf("gen-%d.soak.test", gen) }

func (s *soak) runSecondWriter(ctx context.Context) {
	rng := rand.New(rand.NewSource(s.params.Seed - 1)) //nolint:gosec // reproducible test data
	s.writer.last = map[types.UID]int{}
	for gen := 1; ctx.Err() == nil; gen++ {
		time.Sleep(time.Duration(100+rng.Intn(200)) * time.Millisecond)
		p := s.pods[rng.Intn(len(s.pods))]
		callCtx, cancel := context.WithTimeout(ctx, framework.ApiTimeout)
		err := s.secondWrite(callCtx, p.name, gen)
		cancel()
		switch {
		case apierrors.IsConflict(err):
			s.writer.conflicts.Add(1)
		case err != nil: // the pod is being replaced, or the apiserver restarts: try another time
		default:
			s.writer.writes.Add(1)
		}
	}
}

func (s *soak) secondWrite(ctx context.Context, name string, gen int) error {
	generation := soakGeneration(gen)
	pod, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	entries, err := framework.NetworkStatus(pod)
	if err != nil || len(entries) == 0 || pod.DeletionTimestamp != nil {
		return errors.New("nothing to rewrite")
	}
	var defaults, others []nadv1.NetworkStatus
	for _, e := range entries {
		switch {
		case e.Default:
			defaults = append(defaults, e)
		case e.Name != soakForeignNetwork:
			others = append(others, e)
		}
	}
	slices.Reverse(others)
	out := slices.Concat(defaults,
		[]nadv1.NetworkStatus{{Name: soakForeignNetwork, DNS: nadv1.DNS{Search: []string{generation}}}}, others)
	raw, err := json.Marshal(out)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": pod.ResourceVersion,
		"annotations":     map[string]string{nadv1.NetworkStatusAnnot: string(raw)},
	}})
	if err != nil {
		return err
	}
	if _, err := s.Kube.CoreV1().Pods(s.Ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return err
	}
	s.writer.mu.Lock()
	s.writer.last[pod.UID] = gen
	s.writer.mu.Unlock()
	return nil
}

// foreignEntryLost says whether the pod lost the second writer's last confirmed write: its
// entry must carry that generation or a later one (a write whose answer was lost may have
// landed, during the apiserver restart for instance).
func (s *soak) foreignEntryLost(pod *corev1.Pod) string {
	s.writer.mu.Lock()
	want, wrote := s.writer.last[pod.UID]
	s.writer.mu.Unlock()
	if !wrote {
		return ""
	}
	entries, _ := framework.NetworkStatus(pod)
	for _, e := range entries {
		if e.Name != soakForeignNetwork {
			continue
		}
		var got int
		if len(e.DNS.Search) == 1 {
			_, _ = fmt.Sscanf(e.DNS.Search[0], "gen-%d.soak.test", &got)
		}
		if got >= want {
			return ""
		}
		return fmt.Sprintf("pod %s: the second writer's entry says %v, it last wrote %s", pod.Name, e.DNS.Search, soakGeneration(want))
	}
	return fmt.Sprintf("pod %s: the second writer's entry (last written %s) is gone", pod.Name, soakGeneration(want))
}
