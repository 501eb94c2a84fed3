//go:build e2e

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	nadutils "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/utils"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/netplug/netplug/e2e/framework"
	"github.com/netplug/netplug/e2e/report"
	"github.com/netplug/netplug/pkg/config"
	"github.com/netplug/netplug/pkg/cri"
	"github.com/netplug/netplug/pkg/multus"
)

// TestBench is `make bench`: hot-plug latency, burst throughput and footprint of netplug, measured
// against the raw limit of the Multus daemon it drives, in the same run on the same pods.
//
//   - netplug: N running pods get K networks each in one burst of annotation patches; per pod, the
//     time from its patch until network-status lists all K and the links exist in its netns. Then
//     the same for the unplug burst, and a single plug repeated.
//   - raw: the same N×K ADDs (and DELs) sent straight to the daemon's /delegate endpoint through
//     pkg/multus, with netplug's worker count as parallelism and netns resolved beforehand.
//   - footprint: netplug-controller's CPU time and RSS from /proc for every phase.
//   - a full node (node_test.go): BENCH_NODE_PODS pods × BENCH_NODE_IFACES interfaces in a
//     cluster that holds BENCH_SCALE_PODS pods of a fake node and BENCH_NADS NADs: netplug's
//     idle footprint, its plug burst against raw, the cost of one NAD update, and a restart.
//
// The targets are issue 17's (report.Target*): reported side by side with raw, not enforced;
// the bench fails only when it cannot measure or netplug does something wrong (a /delegate
// call after a restart, a reconcile of a pod that does not reference an updated NAD).
//
// Skipped unless NETPLUG_BENCH=1. Parameters (hack/run/bench.sh sets the full run's):
//
//	BENCH_PODS (50), BENCH_IFACES (2)   the burst and single-plug parts
//	BENCH_NODE_PODS (BENCH_PODS)        pods of the node part, capped by the node's free pod capacity; 0: none (the node part then only measures idle, with BENCH_SCALE_PODS)
//	BENCH_NODE_IFACES (BENCH_IFACES)    interfaces per pod of the node part, 1..32
//	BENCH_NADS (1)                      NADs in the cluster during the node part (at least its own); 0 skips the NAD update
//	BENCH_NAD_REFS (pods/10, at least 1) pods of the node part that reference the updated NAD
//	BENCH_RESTART (1)                   0 skips the restart of netplug in the node part
//	BENCH_SCALE_PODS (0)                pods of a fake node in the cluster during the node part
//	BENCH_IDLE_S (30 if BENCH_SCALE_PODS > 0, else 0) seconds of idle measured in the node part
//	BENCH_OUT (_out/bench.json)         relative to the repository root
func TestBench(t *testing.T) {
	if os.Getenv("NETPLUG_BENCH") != "1" {
		t.Skip("a benchmark: run it with NETPLUG_BENCH=1 (make bench)")
	}
	params, err := benchParamsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBench(params)
	if err != nil {
		t.Fatal(err)
	}
	res := &report.BenchResult{Params: params, Started: time.Now().UTC().Format(time.RFC3339), Node: fw.Env.NodeName}
	defer func() {
		res.Failed = t.Failed()
		b.report(t, res)
	}()
	if err := b.readNetplugConfig(res); err != nil {
		t.Fatal(err)
	}
	if !t.Run("hotplug", func(t *testing.T) { b.runHotplug(t, res) }) {
		return
	}
	if params.NodePods > 0 || params.ScalePods > 0 {
		t.Run("node", func(t *testing.T) { b.runNode(t, res) })
	}
}

const (
	// benchLinkPoll is how often a pod whose network-status is done has its netns links read
	// until they agree; status changes themselves are seen through a watch, not polled.
	benchLinkPoll = 20 * time.Millisecond
	// benchSingleReps is how often the single-plug latency is measured, for netplug and raw.
	benchSingleReps = 10
	// benchSingleQuiet is how long netplug's queues must stay idle before a single plug or
	// unplug: each one meets a netplug that has finished the previous one's follow-up work.
	benchSingleQuiet = 200 * time.Millisecond
	// benchCreateParallelism bounds concurrent pod creations.
	benchCreateParallelism = 50
)

// ---------------------------------------------------------------------------------------------
// Parameters.

func benchParamsFromEnv() (report.BenchParams, error) {
	p := report.BenchParams{Pods: 50, Ifaces: 2, NADs: 1, Restart: true, Out: filepath.Join("_out", "bench.json")}
	nodePods, nodeIfaces, refs, idle, restart := -1, -1, -1, -1, 1
	for _, v := range []struct {
		key      string
		dst      *int
		min, max int
	}{
		// K subnets are 10.(100+k).0.0/16, so at most 100 networks; a /16 holds any N the node runs.
		{"BENCH_PODS", &p.Pods, 1, 10000},
		{"BENCH_IFACES", &p.Ifaces, 1, 100},
		{"BENCH_SCALE_PODS", &p.ScalePods, 0, 1000000},
		// The node part's former name, still read: BENCH_NODE_PODS wins.
		{"BENCH_LOCAL_PODS", &nodePods, 0, 10000},
		{"BENCH_NODE_PODS", &nodePods, 0, 10000},
		// netplug's default maxNetworksPerPod.
		{"BENCH_NODE_IFACES", &nodeIfaces, 1, 32},
		{"BENCH_NADS", &p.NADs, 0, 100000},
		{"BENCH_NAD_REFS", &refs, 1, 10000},
		{"BENCH_RESTART", &restart, 0, 1},
		{"BENCH_IDLE_S", &idle, 0, 3600},
	} {
		raw := strings.TrimSpace(os.Getenv(v.key))
		if raw == "" {
			continue
		}
		n, err := strconv.Atoi(raw)
		if err != nil || n < v.min || n > v.max {
			return p, fmt.Errorf("%s=%q: want an integer in [%d, %d]", v.key, raw, v.min, v.max)
		}
		*v.dst = n
	}
	p.NodePods, p.NodeIfaces, p.NADRefs, p.IdleS, p.Restart = nodePods, nodeIfaces, refs, idle, restart == 1
	if p.NodePods < 0 {
		p.NodePods = p.Pods
	}
	if p.NodeIfaces < 0 {
		p.NodeIfaces = min(p.Ifaces, 32)
	}
	if p.NADRefs < 0 {
		p.NADRefs = max(1, p.NodePods/10)
	}
	if p.IdleS < 0 {
		p.IdleS = 0
		if p.ScalePods > 0 {
			p.IdleS = 30
		}
	}
	if out := os.Getenv("BENCH_OUT"); out != "" {
		p.Out = out
	}
	if !filepath.IsAbs(p.Out) {
		// go test runs in the package directory; a relative path means the repository's.
		root, err := framework.ModuleRoot()
		if err != nil {
			return p, err
		}
		p.Out = filepath.Join(root, p.Out)
	}
	return p, nil
}

// ---------------------------------------------------------------------------------------------
// Results.

// ---------------------------------------------------------------------------------------------
// The bench and its clients.

type bench struct {
	params report.BenchParams
	// kube is the bench's own client: no overall request timeout (watches stay open, every call
	// has its own deadline) and a rate limit that never makes the bench the bottleneck.
	kube   kubernetes.Interface
	nads   nadclient.Interface
	multus *multus.Client
	mon    *framework.ProcessMonitor
}

func newBench(params report.BenchParams) (*bench, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", fw.Env.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", fw.Env.Kubeconfig, err)
	}
	rc.QPS, rc.Burst = 2000, 4000
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("creating the bench's Kubernetes client: %w", err)
	}
	nads, err := nadclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("creating the bench's NAD client: %w", err)
	}
	return &bench{params: params, kube: kube, nads: nads, multus: multus.New(fw.Env.MultusSocket, 60*time.Second)}, nil
}

// readNetplugConfig reads the worker count (the raw burst's parallelism) and API limits from
// the ConfigMap netplug runs with, with netplug's own parser and defaults.
func (b *bench) readNetplugConfig(res *report.BenchResult) error {
	ctx, cancel := context.WithTimeout(context.Background(), framework.ApiTimeout)
	defer cancel()
	cfg := config.Default()
	cm, err := framework.NetplugConfigMap(ctx, b.kube)
	switch {
	case err != nil:
		return err
	case cm == nil:
		// netplug then runs on its defaults too.
	default:
		if cfg, err = config.Parse([]byte(cm.Data["config.json"])); err != nil {
			return fmt.Errorf("ConfigMap %s/%s: %w", framework.NetplugNamespace, cm.Name, err)
		}
	}
	res.Workers, res.APIQPS, res.APIBurst = cfg.Workers, cfg.APIQPS, cfg.APIBurst
	return nil
}

// benchPod is a running pod of the bench with its sandbox, resolved through CRI beforehand.
type benchPod struct {
	Name    string
	UID     types.UID
	Sandbox cri.Sandbox
}

// ---------------------------------------------------------------------------------------------
// Part 1-4: N pods × K networks, netplug against raw /delegate.

func (b *bench) runHotplug(t *testing.T, res *report.BenchResult) {
	n, k := b.params.Pods, b.params.Ifaces
	s := fw.NewScenario(t, "bench")
	mon, err := fw.NewProcessMonitor(t)
	if err != nil {
		t.Fatal(err)
	}
	b.mon = mon

	nads := make([]string, k)
	for i := range nads {
		nads[i] = fmt.Sprintf("bench%d", i)
		s.CreateBridgeNAD(nads[i], fmt.Sprintf("npb%d", i), fmt.Sprintf("10.%d.0.0/16", 100+i))
	}
	if free := b.freePodCapacity(t); n > free {
		t.Fatalf("BENCH_PODS=%d but node %s has room for %d more pods", n, fw.Env.NodeName, free)
	}
	watch := b.watchPods(t, s.Ns)

	names := podNames("p", n)
	var pods []benchPod
	b.measure(t, res, "setup: create and start pods", func() {
		start := time.Now()
		pods = b.startPods(t, s, watch, names)
		res.PodsReadyMs = report.Ms(time.Since(start))
		t.Logf("%d pods running after %s", n, time.Since(start).Round(time.Millisecond))
	})

	// The K networks with explicit interface names nb0..nbK-1.
	elements := make([]framework.Element, k)
	plugged := map[string]string{}
	for i := range elements {
		elements[i] = framework.Element{Name: nads[i], Interface: fmt.Sprintf("nb%d", i)}
		plugged[elements[i].Interface] = s.Ns + "/" + nads[i]
	}
	value := framework.Selection(elements...)
	timeout := 2*time.Minute + time.Duration(n*k)*200*time.Millisecond

	b.measure(t, res, fmt.Sprintf("netplug plug burst %dx%d", n, k), func() {
		res.PlugBurst = b.netplugBurst(t, s.Ns, watch, pods, same(&value), pluggedCheck(plugged), timeout).LatencyStats
	})
	t.Logf("netplug plug burst: %+v", *res.PlugBurst)
	b.verifyPlugged(t, s, pods, ifaceNames(elements), func(_, k int) string { return nads[k] })

	b.measure(t, res, fmt.Sprintf("netplug unplug burst %dx%d", n, k), func() {
		res.UnplugBurst = b.netplugBurst(t, s.Ns, watch, pods, same(nil), unpluggedCheck(plugged), timeout).LatencyStats
	})
	t.Logf("netplug unplug burst: %+v", *res.UnplugBurst)
	for _, nad := range nads {
		s.WaitIPAM(nad) // netplug released every address it allocated
	}

	// Single plug: one pod, one network, repeated.
	single := map[string]string{"sp0": s.Ns + "/" + nads[0]}
	singleValue := framework.Selection(framework.Element{Name: nads[0], Interface: "sp0"})
	b.measure(t, res, "netplug single plug", func() {
		var plugs, unplugs []time.Duration
		plugMetrics, unplugMetrics := &report.MetricsDelta{}, &report.MetricsDelta{}
		// Each plug and unplug starts on an idle netplug, and its metrics run until netplug is
		// idle again: they include the follow-up work of its own writes.
		quiet := b.waitQuiet(t, benchSingleQuiet, time.Minute)
		for range benchSingleReps {
			plugs = append(plugs, b.netplugBurst(t, s.Ns, watch, pods[:1], same(&singleValue), pluggedCheck(single), framework.PlugTimeout).latencies...)
			next := b.waitQuiet(t, benchSingleQuiet, time.Minute)
			plugMetrics.Merge(quiet.Delta(next))
			unplugs = append(unplugs, b.netplugBurst(t, s.Ns, watch, pods[:1], same(nil), unpluggedCheck(single), framework.PlugTimeout).latencies...)
			quiet = b.waitQuiet(t, benchSingleQuiet, time.Minute)
			unplugMetrics.Merge(next.Delta(quiet))
		}
		res.SinglePlug, res.SingleUnplug = report.Summarize(plugs, 0), report.Summarize(unplugs, 0)
		if quiet != nil {
			res.SinglePlugMetrics, res.SingleUnplugMetrics = plugMetrics, unplugMetrics
		}
	})
	s.WaitIPAM(nads[0])

	// The raw limit: the same ADDs and DELs straight to the daemon, netplug idle meanwhile.
	configs := b.nadConfigs(t, s.Ns, nads)
	b.measure(t, res, fmt.Sprintf("raw /delegate ADD burst %dx%d (netplug idle)", n, k), func() {
		res.RawAdd = b.rawBurst(t, s.Ns, pods, sameConfigs(configs), "raw", "ADD", res.Workers)
	})
	t.Logf("raw ADD burst: %+v", *res.RawAdd)
	nadOf := func(_, k int) string { return nads[k] }
	b.verifyRaw(t, s, pods, k, nadOf, "raw", true)
	b.measure(t, res, fmt.Sprintf("raw /delegate DEL burst %dx%d (netplug idle)", n, k), func() {
		res.RawDel = b.rawBurst(t, s.Ns, pods, sameConfigs(configs), "raw", "DEL", res.Workers)
	})
	t.Logf("raw DEL burst: %+v", *res.RawDel)
	b.verifyRaw(t, s, pods, k, nadOf, "raw", false)

	b.measure(t, res, "raw /delegate single ADD+DEL", func() {
		adds, dels := b.rawSingle(t, s.Ns, pods[0], configs[0], "rsp0")
		res.SingleRawAdd, res.SingleRawDel = report.Summarize(adds, 0), report.Summarize(dels, 0)
	})
	b.measure(t, res, "raw /delegate single ADD right after a pod patch", func() {
		res.SingleRawAddAfterPatch = report.Summarize(b.rawSingleAfterPatch(t, s.Ns, pods[0], configs[0], "rsp0"), 0)
	})
	s.WaitIPAM(nads[0])

	if res.RawAdd.BurstMs > 0 {
		res.BurstRatio = report.Round2(res.PlugBurst.BurstMs / res.RawAdd.BurstMs)
	}
	if res.RawDel.BurstMs > 0 {
		res.UnplugBurstRatio = report.Round2(res.UnplugBurst.BurstMs / res.RawDel.BurstMs)
	}
	if res.SingleRawAdd.P50Ms > 0 {
		res.SingleP50Ratio = report.Round2(res.SinglePlug.P50Ms / res.SingleRawAdd.P50Ms)
	}
	res.SingleP50DeltaMs = report.Round2(res.SinglePlug.P50Ms - res.SingleRawAdd.P50Ms)
	res.SingleUnplugP50DeltaMs = report.Round2(res.SingleUnplug.P50Ms - res.SingleRawDel.P50Ms)

	b.measure(t, res, "teardown: delete pods", func() {
		b.deletePods(t, s.Ns, "", 5*time.Minute)
	})
}

func podNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return names
}

// same is the selection of every pod of a burst: value (nil: no annotation) for each.
func same(value *string) func(i int) *string { return func(int) *string { return value } }

// netplugBurst patches every pod's network-selection annotation at once (value(i) of pod i; nil
// removes it) and waits until check passes for each; it fails the test if one does not in time.
func (b *bench) netplugBurst(t *testing.T, ns string, watch *podWatch, pods []benchPod, value func(i int) *string,
	check podCheck, timeout time.Duration) *burstResultStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	patches := make([][]byte, len(pods))
	for i := range pods {
		var err error
		patches[i], err = json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]*string{
			nadv1.NetworkAttachmentAnnot: value(i)}}})
		if err != nil {
			t.Fatalf("encoding patch: %v", err)
		}
	}
	sent := make([]time.Time, len(pods))
	var waitErr error
	var done []time.Time
	waited := make(chan struct{})
	// The waiters run before the first patch: no change can slip by unseen.
	go func() {
		defer close(waited)
		done, waitErr = watch.waitEach(ctx, pods, check)
	}()
	patchErrs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			callCtx, callCancel := context.WithTimeout(ctx, framework.ApiTimeout)
			defer callCancel()
			sent[i] = time.Now()
			if _, err := b.kube.CoreV1().Pods(ns).Patch(callCtx, p.Name, types.MergePatchType, patches[i], metav1.PatchOptions{}); err != nil {
				patchErrs[i] = fmt.Errorf("patching pod %s: %w", p.Name, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(patchErrs...); err != nil {
		cancel()
		<-waited
		t.Fatal(err)
	}
	<-waited
	if waitErr != nil {
		t.Fatalf("netplug did not converge within %s: %v", timeout, waitErr)
	}
	lat := make([]time.Duration, len(pods))
	first, last := sent[0], done[0]
	for i := range pods {
		lat[i] = done[i].Sub(sent[i])
		if sent[i].Before(first) {
			first = sent[i]
		}
		if done[i].After(last) {
			last = done[i]
		}
	}
	stats := report.Summarize(lat, last.Sub(first))
	return &burstResultStats{LatencyStats: stats, latencies: lat}
}

// burstResultStats is a summary that keeps its samples, for callers that pool several bursts.
type burstResultStats struct {
	*report.LatencyStats
	latencies []time.Duration
}

func ifaceNames(elements []framework.Element) []string {
	names := make([]string, len(elements))
	for i, e := range elements {
		names[i] = e.Interface
	}
	return names
}

// verifyPlugged checks, after the timing, that interface ifaces[k] of pod i is NAD nadOf(i, k)
// and agrees with network-status (MAC, addresses), and that host-local holds exactly the
// reported addresses. It returns the interfaces by "pod/interface".
func (b *bench) verifyPlugged(t *testing.T, s *framework.Scenario, pods []benchPod, ifaces []string, nadOf func(i, k int) string) map[string]framework.Attached {
	t.Helper()
	ips := map[string][]string{}
	attached := map[string]framework.Attached{}
	for i, p := range pods {
		pod := s.MustGetPod(p.Name)
		for k, iface := range ifaces {
			nad := nadOf(i, k)
			ctx, cancel := s.Ctx()
			a, why := s.CheckAttached(ctx, pod, nad, iface)
			cancel()
			if why != "" {
				t.Fatalf("pod %s: %s", p.Name, why)
			}
			ips[nad] = append(ips[nad], a.IP())
			attached[p.Name+"/"+iface] = a
		}
	}
	for _, nad := range slices.Sorted(maps.Keys(ips)) {
		s.WaitIPAM(nad, ips[nad]...)
	}
	return attached
}

// nadConfigs returns the CNI config netplug would send for each NAD.
func (b *bench) nadConfigs(t *testing.T, ns string, nads []string) [][]byte {
	t.Helper()
	configs := make([][]byte, len(nads))
	for i, name := range nads {
		ctx, cancel := context.WithTimeout(context.Background(), framework.ApiTimeout)
		nad, err := fw.Nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(ns).Get(ctx, name, metav1.GetOptions{})
		cancel()
		if err != nil {
			t.Fatalf("reading NAD %s/%s: %v", ns, name, err)
		}
		if configs[i], err = nadutils.GetCNIConfigFromSpec(nad.Spec.Config, name); err != nil {
			t.Fatalf("NAD %s/%s: %v", ns, name, err)
		}
	}
	return configs
}

// sameConfigs gives every pod of a raw burst the same configs.
func sameConfigs(configs [][]byte) func(i int) [][]byte { return func(int) [][]byte { return configs } }

// rawBurst sends command (ADD or DEL) for every pod and network straight to the daemon: workers
// goroutines take one pod at a time and run its K calls in order, as netplug's workers do. A
// pod's latency is from the burst's start until its last call returned.
func (b *bench) rawBurst(t *testing.T, ns string, pods []benchPod, configsOf func(i int) [][]byte, ifPrefix, command string, workers int) *report.LatencyStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute+time.Duration(len(pods)*len(configsOf(0)))*time.Second)
	defer cancel()
	lat := make([]time.Duration, len(pods))
	errs := make([]error, len(pods))
	next := make(chan int, len(pods))
	for i := range pods {
		next <- i
	}
	close(next)
	start := time.Now()
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				for k, cfg := range configsOf(i) {
					if err := b.rawCall(ctx, ns, pods[i], cfg, fmt.Sprintf("%s%d", ifPrefix, k), command); err != nil {
						errs[i] = errors.Join(errs[i], err)
					}
				}
				lat[i] = time.Since(start)
			}
		}()
	}
	wg.Wait()
	burst := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("raw %s burst: %v", command, err)
	}
	return report.Summarize(lat, burst)
}

func (b *bench) rawCall(ctx context.Context, ns string, p benchPod, cfg []byte, ifName, command string) error {
	req := multus.Request{
		SandboxID: p.Sandbox.ID, NetNS: p.Sandbox.NetNS, IfName: ifName,
		PodNamespace: ns, PodName: p.Name, PodUID: string(p.UID), Config: cfg,
	}
	var err error
	if command == "ADD" {
		_, err = b.multus.Add(ctx, req)
	} else {
		err = b.multus.Del(ctx, req)
	}
	if err != nil {
		return fmt.Errorf("pod %s: %s %s: %w", p.Name, command, ifName, err)
	}
	return nil
}

// rawSingle times benchSingleReps ADD and DEL calls of one interface of one pod.
func (b *bench) rawSingle(t *testing.T, ns string, p benchPod, cfg []byte, ifName string) (adds, dels []time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for range benchSingleReps {
		start := time.Now()
		if err := b.rawCall(ctx, ns, p, cfg, ifName, "ADD"); err != nil {
			t.Fatal(err)
		}
		adds = append(adds, time.Since(start))
		start = time.Now()
		if err := b.rawCall(ctx, ns, p, cfg, ifName, "DEL"); err != nil {
			t.Fatal(err)
		}
		dels = append(dels, time.Since(start))
	}
	return adds, dels
}

// rawSingleAfterPatch times benchSingleReps ADDs, each sent right after a patch of the pod (an
// annotation nothing reads) on an idle netplug: netplug's ADD meets the fan-out of the pod's
// updates (the user's patch and netplug's finalizer reach the kubelet, Multus's informer and
// netplug's), raw's back-to-back calls do not. This measures what that costs the call itself.
func (b *bench) rawSingleAfterPatch(t *testing.T, ns string, p benchPod, cfg []byte, ifName string) (adds []time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := range benchSingleReps {
		b.waitQuiet(t, benchSingleQuiet, time.Minute)
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"bench.netplug.io/touch":"%d"}}}`, i)
		if _, err := b.kube.CoreV1().Pods(ns).Patch(ctx, p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := b.rawCall(ctx, ns, p, cfg, ifName, "ADD"); err != nil {
			t.Fatal(err)
		}
		adds = append(adds, time.Since(start))
		if err := b.rawCall(ctx, ns, p, cfg, ifName, "DEL"); err != nil {
			t.Fatal(err)
		}
	}
	return adds
}

// verifyRaw checks that the k raw interfaces of each pod are all there with their addresses
// allocated (present) or all gone with their addresses released (!present); interface j of pod
// i is of NAD nadOf(i, j).
func (b *bench) verifyRaw(t *testing.T, s *framework.Scenario, pods []benchPod, k int, nadOf func(i, j int) string, ifPrefix string, present bool) {
	t.Helper()
	want := map[string]int{}
	for i, p := range pods {
		links, err := framework.NetnsLinks(p.Sandbox.NetNS)
		if err != nil {
			t.Fatal(err)
		}
		for j := range k {
			want[nadOf(i, j)]++
			name := fmt.Sprintf("%s%d", ifPrefix, j)
			if _, ok := links[name]; ok != present {
				t.Fatalf("pod %s: link %s present=%t after the raw burst, want %t (links: %v)", p.Name, name, ok, present, framework.LinkNames(links))
			}
		}
	}
	for _, nad := range slices.Sorted(maps.Keys(want)) {
		if !present {
			s.WaitIPAM(nad)
			continue
		}
		got, err := s.IpamAllocations(nad)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != want[nad] {
			t.Fatalf("IPAM of %s holds %d addresses after the raw ADD burst, want %d", nad, len(got), want[nad])
		}
	}
}

// ---------------------------------------------------------------------------------------------
// The node part's fixtures (node_test.go): a namespace outside the framework's scenarios, a fake
// node and its pods.

func (b *bench) createNamespace(t *testing.T, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), framework.ApiTimeout)
	defer cancel()
	_, err := b.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"netplug-e2e": "true"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", ns, err)
	}
	// The ServiceAccount admission refuses pods until "default" exists.
	_, err = b.kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating the default service account in %s: %v", ns, err)
	}
}

func (b *bench) createFakeNode(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), framework.ApiTimeout)
	defer cancel()
	_, err := b.kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: report.BenchFakeNode, Labels: map[string]string{"kubernetes.io/hostname": report.BenchFakeNode, "netplug-e2e": "true"},
	}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating node %s: %v", report.BenchFakeNode, err)
	}
}

// deleteFakeNode deletes the node, then whatever is still meant for it, which no kubelet will
// ever confirm: pods bound to it, and the netplug DaemonSet's pod for it, which stays Pending
// (the node has no capacity) and which the DaemonSet controller may leave behind for minutes.
func (b *bench) deleteFakeNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), framework.ApiTimeout)
	defer cancel()
	if err := b.kube.CoreV1().Nodes().Delete(ctx, report.BenchFakeNode, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Logf("cleanup: deleting node %s: %v", report.BenchFakeNode, err)
	}
	list, err := b.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + report.BenchFakeNode})
	if err != nil {
		t.Logf("cleanup: listing pods of node %s: %v", report.BenchFakeNode, err)
		return
	}
	namespaces := map[string]bool{}
	for _, p := range list.Items {
		namespaces[p.Namespace] = true
	}
	for ns := range namespaces {
		b.deletePods(t, ns, "spec.nodeName="+report.BenchFakeNode, 2*time.Minute)
	}
	unbound, err := b.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName="})
	if err != nil {
		t.Logf("cleanup: listing unscheduled pods: %v", err)
		return
	}
	zero := int64(0)
	for _, p := range unbound.Items {
		if !meantFor(&p, report.BenchFakeNode) {
			continue
		}
		err := b.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero,
			Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			t.Logf("cleanup: deleting pod %s/%s of node %s: %v", p.Namespace, p.Name, report.BenchFakeNode, err)
		}
	}
}

// meantFor reports whether the pod's required node affinity pins it to node by name, as the
// DaemonSet controller pins the pods it creates.
func meantFor(pod *corev1.Pod, node string) bool {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return false
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, f := range term.MatchFields {
			if f.Key == "metadata.name" && f.Operator == corev1.NodeSelectorOpIn && slices.Equal(f.Values, []string{node}) {
				return true
			}
		}
	}
	return false
}

// createFakePods creates n pods bound to the fake node, benchCreateParallelism at a time.
func (b *bench) createFakePods(t *testing.T, ns string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute+time.Duration(n)*20*time.Millisecond)
	defer cancel()
	template := (&framework.Scenario{Framework: fw, Ns: ns}).NewPod("")
	template.Spec.NodeName = report.BenchFakeNode
	// The node never becomes Ready: without this, the taint eviction controller starts deleting
	// all of them after 5 minutes, in the middle of the measurements.
	template.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	// Like a pod there that uses a secondary network: netplug must not even look at it.
	template.Annotations = map[string]string{nadv1.NetworkAttachmentAnnot: "scale@sc0"}
	err := forEachLimited(ctx, n, benchCreateParallelism, func(ctx context.Context, i int) error {
		pod := template.DeepCopy()
		pod.Name = fmt.Sprintf("f%06d", i)
		callCtx, callCancel := context.WithTimeout(ctx, framework.ApiTimeout)
		defer callCancel()
		_, err := b.kube.CoreV1().Pods(ns).Create(callCtx, pod, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating pod %s/%s: %w", ns, pod.Name, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// forEachLimited runs fn for 0..n-1, at most limit at a time, stopping at the first error.
func forEachLimited(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, limit)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// freePodCapacity is how many more pods the node admits: allocatable pods minus those bound
// to it that have not finished.
func (b *bench) freePodCapacity(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), framework.ApiTimeout)
	defer cancel()
	node, err := b.kube.CoreV1().Nodes().Get(ctx, fw.Env.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading node %s: %v", fw.Env.NodeName, err)
	}
	list, err := b.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + fw.Env.NodeName})
	if err != nil {
		t.Fatalf("listing the pods of node %s: %v", fw.Env.NodeName, err)
	}
	used := 0
	for _, p := range list.Items {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			used++
		}
	}
	return int(node.Status.Allocatable.Pods().Value()) - used
}

// ---------------------------------------------------------------------------------------------
// Pods: creation, start, deletion.

// startPods creates the named pods on the node concurrently and waits until all run; then it
// resolves each pod's sandbox and netns through CRI, once.
func (b *bench) startPods(t *testing.T, s *framework.Scenario, watch *podWatch, names []string) []benchPod {
	t.Helper()
	timeout := 2*time.Minute + time.Duration(len(names))*2*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := forEachLimited(ctx, len(names), benchCreateParallelism, func(ctx context.Context, i int) error {
		pod := s.NewPod(names[i])
		callCtx, callCancel := context.WithTimeout(ctx, framework.ApiTimeout)
		defer callCancel()
		if _, err := b.kube.CoreV1().Pods(s.Ns).Create(callCtx, pod, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating pod %s/%s: %w", s.Ns, names[i], err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pods := make([]benchPod, len(names))
	for i, n := range names {
		pods[i].Name = n
	}
	if _, err := watch.waitEach(ctx, pods, runningCheck); err != nil {
		t.Fatalf("pods not running after %s: %v", timeout, err)
	}
	for i := range pods {
		pod, err := watch.get(pods[i].Name)
		if err != nil {
			t.Fatal(err)
		}
		pods[i].UID = pod.UID
		callCtx, callCancel := context.WithTimeout(ctx, framework.ApiTimeout)
		pods[i].Sandbox, err = fw.Cri.PodSandbox(callCtx, string(pod.UID))
		callCancel()
		if err != nil {
			t.Fatalf("sandbox of pod %s: %v", pod.Name, err)
		}
	}
	return pods
}

// deletePods deletes the namespace's pods (those matching fieldSelector, if set) and waits until
// they are gone. Pods of this node get a second to stop; the rest none, since no kubelet will
// confirm them. The deletions are DeleteCollection calls, repeated while pods remain: one call
// for thousands of pods may outlast the apiserver's request timeout.
func (b *bench) deletePods(t *testing.T, ns, fieldSelector string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	pods := b.kube.CoreV1().Pods(ns)
	var lastErr error
	for ctx.Err() == nil {
		for _, local := range []bool{true, false} {
			sel, grace := "spec.nodeName="+fw.Env.NodeName, int64(1)
			if !local {
				sel, grace = "spec.nodeName!="+fw.Env.NodeName, 0
			}
			if fieldSelector != "" {
				sel += "," + fieldSelector
			}
			err := pods.DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace}, metav1.ListOptions{FieldSelector: sel})
			if err != nil && !apierrors.IsNotFound(err) {
				lastErr = fmt.Errorf("deleting the pods of %s (%s): %w", ns, sel, err)
			}
		}
		// Wait for them to go, up to a minute before deleting again.
		if _, err := framework.Poll(ctx, framework.PollInterval, time.Minute, func(ctx context.Context) (bool, string) {
			list, err := pods.List(ctx, metav1.ListOptions{FieldSelector: fieldSelector, Limit: 1})
			return err == nil && len(list.Items) == 0, "pods left"
		}); err == nil {
			return
		}
	}
	t.Errorf("pods of %s still there after %s (last error: %v)", ns, timeout, lastErr)
}

// ---------------------------------------------------------------------------------------------
// Watching pods: status changes are pushed, links are read only when the status says done.

// podWatch caches a namespace's pods through an informer and wakes up the waiter of a pod on
// every change of it.
type podWatch struct {
	lister corelisters.PodNamespaceLister
	mu     sync.Mutex
	wake   map[string]chan struct{}
}

func (b *bench) watchPods(t *testing.T, ns string) *podWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory := informers.NewSharedInformerFactoryWithOptions(b.kube, 0, informers.WithNamespace(ns))
	podInformer := factory.Core().V1().Pods()
	w := &podWatch{lister: podInformer.Lister().Pods(ns), wake: map[string]chan struct{}{}}
	notify := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			select {
			case w.wakeup(pod.Name) <- struct{}{}:
			default: // a wake-up is already pending
			}
		}
	}
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: notify, UpdateFunc: func(_, obj any) { notify(obj) }, DeleteFunc: notify,
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), podInformer.Informer().HasSynced) {
		t.Fatalf("the pod watch of %s did not sync", ns)
	}
	return w
}

func (w *podWatch) wakeup(name string) chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.wake[name]
	if !ok {
		ch = make(chan struct{}, 1)
		w.wake[name] = ch
	}
	return ch
}

func (w *podWatch) get(name string) (*corev1.Pod, error) { return w.lister.Get(name) }

// checkResult is a podCheck's verdict: done, or why not; pollLinks asks for a re-check in
// benchLinkPoll even without a pod change (the API side is done, the netns is not yet).
type checkResult struct {
	done      bool
	pollLinks bool
	why       string
}

type podCheck func(pod *corev1.Pod, p benchPod) checkResult

// waitEach waits until check passes for every pod and returns, per pod, when it was seen passing.
func (w *podWatch) waitEach(ctx context.Context, pods []benchPod, check podCheck) ([]time.Time, error) {
	done := make([]time.Time, len(pods))
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wake := w.wakeup(p.Name)
			var why string
			for {
				// Events are the fast path; the slow poll only guards against a lost one.
				poll := time.Second
				if pod, err := w.get(p.Name); err != nil {
					why = err.Error()
				} else {
					r := check(pod, p)
					if r.done {
						done[i] = time.Now()
						return
					}
					why = r.why
					if r.pollLinks {
						poll = benchLinkPoll
					}
				}
				timer := time.NewTimer(poll)
				select {
				case <-wake:
				case <-timer.C:
				case <-ctx.Done():
					timer.Stop()
					errs[i] = fmt.Errorf("pod %s: %s", p.Name, why)
					return
				}
				timer.Stop()
			}
		}()
	}
	wg.Wait()
	return done, errors.Join(errs...)
}

func runningCheck(pod *corev1.Pod, _ benchPod) checkResult {
	if pod.Status.Phase != corev1.PodRunning {
		return checkResult{why: "phase " + string(pod.Status.Phase)}
	}
	if !framework.PodReady(pod) {
		return checkResult{why: "not ready"}
	}
	return checkResult{done: true}
}

// pluggedCheck passes once network-status lists every interface of want (interface -> network
// "ns/name") as that network and the pod's netns has all of them up.
func pluggedCheck(want map[string]string) podCheck {
	return func(pod *corev1.Pod, p benchPod) checkResult {
		statuses, err := framework.SecondaryStatus(pod)
		if err != nil {
			return checkResult{why: err.Error()}
		}
		for iface, network := range want {
			st, ok := statuses[iface]
			if !ok || st.Name != network {
				return checkResult{why: fmt.Sprintf("network-status has no %s as %s", iface, network)}
			}
		}
		links, err := framework.NetnsLinks(p.Sandbox.NetNS)
		if err != nil {
			return checkResult{pollLinks: true, why: err.Error()}
		}
		for iface := range want {
			if l, ok := links[iface]; !ok || !l.Up {
				return checkResult{pollLinks: true, why: fmt.Sprintf("link %s not up in the netns (links %v)", iface, framework.LinkNames(links))}
			}
		}
		return checkResult{done: true}
	}
}

// unpluggedCheck passes once neither network-status nor the netns has any interface of want.
func unpluggedCheck(want map[string]string) podCheck {
	return func(pod *corev1.Pod, p benchPod) checkResult {
		statuses, err := framework.SecondaryStatus(pod)
		if err != nil {
			return checkResult{why: err.Error()}
		}
		for iface := range want {
			if _, ok := statuses[iface]; ok {
				return checkResult{why: "network-status still lists " + iface}
			}
		}
		links, err := framework.NetnsLinks(p.Sandbox.NetNS)
		if err != nil {
			return checkResult{pollLinks: true, why: err.Error()}
		}
		for iface := range want {
			if _, ok := links[iface]; ok {
				return checkResult{pollLinks: true, why: "link " + iface + " still in the netns"}
			}
		}
		return checkResult{done: true}
	}
}

// ---------------------------------------------------------------------------------------------
// Process cost from /proc.

// measure runs fn as the named phase and records netplug's CPU and memory over it; the RSS is
// sampled every 100 ms for the phase's peak. A controller that restarted fails the test.
func (b *bench) measure(t *testing.T, res *report.BenchResult, name string, fn func()) (cost *report.PhaseCost) {
	t.Helper()
	if b.mon == nil {
		fn()
		return nil
	}
	before, err := b.mon.Sample()
	if err != nil {
		t.Fatalf("before %s: %v", name, err)
	}
	metricsBefore := framework.ScrapeMetrics()
	peak, anonPeak := before.RssKiB, before.AnonKiB
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if s, err := b.mon.Sample(); err == nil {
					peak, anonPeak = max(peak, s.RssKiB), max(anonPeak, s.AnonKiB)
				}
			}
		}
	}()
	defer func() {
		// Also when fn fails the test: the phase's figures still explain what happened.
		close(stop)
		<-sampled
		after, err := b.mon.Sample()
		if err != nil {
			t.Errorf("after %s: %v\n%s", name, err, b.controllerLogs())
			return
		}
		peak, anonPeak = max(peak, after.RssKiB), max(anonPeak, after.AnonKiB)
		wall := after.At.Sub(before.At).Seconds()
		cpu := float64(after.CpuTicks-before.CpuTicks) / framework.ClockTicks
		p := &report.PhaseCost{
			Phase: name, WallS: report.Round2(wall), CPUS: report.Round2(cpu), CPUPercent: report.Round2(100 * cpu / wall),
			RSSStartMiB: report.Kib2mib(before.RssKiB), RSSEndMiB: report.Kib2mib(after.RssKiB), RSSPeakMiB: report.Kib2mib(peak),
			HWMMiB: report.Kib2mib(after.HwmKiB), AnonPeakMiB: report.Kib2mib(anonPeak),
			MultusCPUS: report.Round2(float64(after.MultusTicks-before.MultusTicks) / framework.ClockTicks),
		}
		if dt := after.Total - before.Total; dt > 0 {
			// /proc/stat sums all CPUs; 100% is one core busy.
			p.HostCPUPercent = report.Round2(100 * float64(after.HostBusy-before.HostBusy) / float64(dt) * float64(numCPU()))
		}
		p.Metrics = metricsBefore.Delta(framework.ScrapeMetrics())
		res.AddPhase(p)
		cost = p
	}()
	fn()
	return cost
}

func numCPU() int { return runtime.NumCPU() }

// controllerLogs is the tail of netplug's logs, for a failure that involves the controller.
func (b *bench) controllerLogs() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return "--- netplug logs\n" + fw.NetplugLogs(ctx, 150)
}

// ---------------------------------------------------------------------------------------------
// netplug's own metrics, before and after a phase: where its time went.

// ---------------------------------------------------------------------------------------------
// Part 6: the report, as Markdown on stdout and JSON in BENCH_OUT.

func (b *bench) report(t *testing.T, res *report.BenchResult) {
	md := res.Markdown()
	fmt.Print("\n" + md + "\n")
	if err := report.WriteJSON(res.Params.Out, res); err != nil {
		t.Errorf("writing the results: %v", err)
		return
	}
	t.Logf("results written to %s", res.Params.Out)
}
