//go:build e2e

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/netplug/netplug/e2e/framework"
	"github.com/netplug/netplug/e2e/report"
)

// The node part: a full node in a full cluster (issue 17's targets 3-6).
//
//   - BENCH_SCALE_PODS pods bound to a fake node (API objects only) and BENCH_NADS NADs in the
//     cluster, BENCH_NODE_PODS running pods on the node (capped by its free pod capacity).
//   - idle: netplug's RSS and CPU over BENCH_IDLE_S with all of that in the cluster.
//   - plug burst: every pod gets BENCH_NODE_IFACES interfaces at once; netplug's RSS peak during
//     it; then the same ADDs straight to /delegate at netplug's parallelism, and the DELs.
//   - one NAD update: the last interface of BENCH_NAD_REFS pods is NAD "refd", of the others NAD
//     "other". "refd" gets a new annotation; netplug's /metrics say how many reconciles and
//     /delegate calls followed and when its queues were idle again.
//   - restart: netplug's pod is deleted with every interface plugged; the new process must
//     resync without a /delegate call; the times to its start, /readyz and convergence.
const (
	// benchNodeQuiet is how long netplug's queues must be idle before the NAD update and the
	// restart, and after the update (a reconcile that comes late still counts).
	benchNodeQuiet = time.Second
	// benchNADAttempts bounds the NAD updates tried until one is not overlapped by the
	// informers' periodic resync (resyncPeriod, 5 minutes), which reconciles every pod.
	benchNADAttempts = 3
	// benchNADTouch is the annotation the NAD update sets: a change netplug sees as an update of
	// the NAD, with nothing in it to act on.
	benchNADTouch = "bench.netplug.io/touched"
	// benchNADParallelism bounds concurrent NAD creations.
	benchNADParallelism = 20
)

// nodeLayout is which NAD each interface of the node part's pods is. Interface k < K-1 of every
// pod is NAD shared<k>; the last interface is NAD "refd" for the first refs pods and "other" for
// the rest: an update of "refd" is for those pods only.
type nodeLayout struct {
	ifaces, refs int
}

const (
	nodeNADRefd  = "refd"
	nodeNADOther = "other"
)

func (l nodeLayout) iface(k int) string { return fmt.Sprintf("nn%d", k) }

func (l nodeLayout) nad(i, k int) string {
	switch {
	case k < l.ifaces-1:
		return fmt.Sprintf("shared%d", k)
	case i < l.refs:
		return nodeNADRefd
	default:
		return nodeNADOther
	}
}

func (l nodeLayout) ifaceNames() []string {
	names := make([]string, l.ifaces)
	for k := range names {
		names[k] = l.iface(k)
	}
	return names
}

// nads are the NADs the pods use, with the bridge and subnet of each: 10.(60+k).0.0/16 for the
// shared ones (K ≤ 32), 10.97 and 10.98 for "refd" and "other"; apart from the hotplug part's
// 10.100+ and anything else the e2e packages use.
func (l nodeLayout) nads() (names, bridges, subnets []string) {
	for k := range l.ifaces - 1 {
		names = append(names, fmt.Sprintf("shared%d", k))
		bridges = append(bridges, fmt.Sprintf("npn%d", k))
		subnets = append(subnets, fmt.Sprintf("10.%d.0.0/16", 60+k))
	}
	return append(names, nodeNADRefd, nodeNADOther), append(bridges, "npnrefd", "npnother"),
		append(subnets, "10.97.0.0/16", "10.98.0.0/16")
}

// selection is pod i's network-selection annotation.
func (l nodeLayout) selection(i int) *string {
	elements := make([]framework.Element, l.ifaces)
	for k := range elements {
		elements[k] = framework.Element{Name: l.nad(i, k), Interface: l.iface(k)}
	}
	v := framework.Selection(elements...)
	return &v
}

// want is what pod i's network-status must list: interface -> "ns/nad".
func (l nodeLayout) want(ns string, i int) map[string]string {
	want := map[string]string{}
	for k := range l.ifaces {
		want[l.iface(k)] = ns + "/" + l.nad(i, k)
	}
	return want
}

func (b *bench) runNode(t *testing.T, res *report.BenchResult) {
	nr := &report.NodeResult{PodsAsked: b.params.NodePods, Ifaces: b.params.NodeIfaces}
	res.FullNode = nr
	var err error
	if b.mon == nil {
		if b.mon, err = fw.NewProcessMonitor(t); err != nil {
			t.Fatal(err)
		}
	}
	if base, err := b.mon.Sample(); err == nil {
		nr.BaselineRSSMiB = report.Kib2mib(base.RssKiB)
	}

	if b.params.ScalePods > 0 {
		b.startFakePods(t, nr)
	}

	s := fw.NewScenario(t, "benchnode")
	names, bridges, subnets := nodeLayout{ifaces: b.params.NodeIfaces}.nads()
	for i := range names {
		s.CreateBridgeNAD(names[i], bridges[i], subnets[i])
	}
	local := b.params.NodePods
	if free := b.freePodCapacity(t); local > free {
		res.Note(t, "BENCH_NODE_PODS=%d capped to %d: the node's pod capacity minus the pods it already runs", local, free)
		local = max(free, 0)
	}
	if b.params.NodePods > 0 && local < 1 {
		t.Fatalf("node %s has no room for the node part's pods", fw.Env.NodeName)
	}
	nr.Pods = local
	layout := nodeLayout{ifaces: b.params.NodeIfaces, refs: min(b.params.NADRefs, local)}
	watch := b.watchPods(t, s.Ns)
	var pods []benchPod
	if local > 0 {
		start := time.Now()
		pods = b.startPods(t, s, watch, podNames("n", local))
		nr.PodsReadyMs = report.Ms(time.Since(start))
		t.Logf("%d pods running after %s", local, time.Since(start).Round(time.Millisecond))
	}

	// Idle: the pods' last status updates done, netplug doing nothing.
	if b.params.IdleS > 0 {
		b.waitQuiet(t, benchNodeQuiet, 2*time.Minute)
		idle := time.Duration(b.params.IdleS) * time.Second
		nr.Idle = b.measure(t, res, fmt.Sprintf("node: idle %s with %d+%d pods", idle, nr.FakePods, local), func() {
			time.Sleep(idle)
		})
	}

	// The rest of the NADs, which no pod references.
	nr.NADs = b.fillNADs(t, res, s.Ns, b.params.NADs)
	if local == 0 {
		return
	}

	k := layout.ifaces
	timeout := 2*time.Minute + time.Duration(local*k)*200*time.Millisecond
	checks := map[string]podCheck{}
	for i, p := range pods {
		checks[p.Name] = pluggedCheck(layout.want(s.Ns, i))
	}
	plugged := func(pod *corev1.Pod, p benchPod) checkResult { return checks[p.Name](pod, p) }
	nr.PlugBurstCost = b.measure(t, res, fmt.Sprintf("node: netplug plug burst %dx%d", local, k), func() {
		nr.PlugBurst = b.netplugBurst(t, s.Ns, watch, pods, layout.selection, plugged, timeout).LatencyStats
	})
	t.Logf("node plug burst: %+v", *nr.PlugBurst)
	attached := b.verifyPlugged(t, s, pods, layout.ifaceNames(), layout.nad)

	if b.params.NADs > 0 {
		b.measure(t, res, "node: one NAD update", func() {
			nr.NADUpdate = b.nadUpdate(t, res, s.Ns, nr, layout)
		})
	}
	if b.params.Restart {
		b.restart(t, nr, local, k)
		if after := b.verifyPlugged(t, s, pods, layout.ifaceNames(), layout.nad); !t.Failed() {
			for key, a := range attached {
				if got := after[key]; !got.Link.Same(a.Link) || got.IP() != a.IP() {
					t.Errorf("%s changed across the restart: %+v, was %+v", key, got, a)
				}
			}
		}
	}

	// The one unplug check needs only the interface names, the same in every pod.
	b.measure(t, res, fmt.Sprintf("node: netplug unplug burst %dx%d", local, k), func() {
		nr.UnplugBurst = b.netplugBurst(t, s.Ns, watch, pods, same(nil), unpluggedCheck(layout.want(s.Ns, 0)), timeout).LatencyStats
	})
	for _, nad := range names {
		s.WaitIPAM(nad)
	}

	// The raw limit on the same pods: the same ADDs and DELs, netplug idle meanwhile.
	configs := b.nadConfigs(t, s.Ns, names)
	byName := map[string][]byte{}
	for i, name := range names {
		byName[name] = configs[i]
	}
	configsOf := func(i int) [][]byte {
		out := make([][]byte, k)
		for j := range out {
			out[j] = byName[layout.nad(i, j)]
		}
		return out
	}
	b.measure(t, res, fmt.Sprintf("node: raw /delegate ADD burst %dx%d (netplug idle)", local, k), func() {
		nr.RawAdd = b.rawBurst(t, s.Ns, pods, configsOf, "rn", "ADD", res.Workers)
	})
	t.Logf("node raw ADD burst: %+v", *nr.RawAdd)
	b.verifyRaw(t, s, pods, k, layout.nad, "rn", true)
	b.measure(t, res, fmt.Sprintf("node: raw /delegate DEL burst %dx%d (netplug idle)", local, k), func() {
		nr.RawDel = b.rawBurst(t, s.Ns, pods, configsOf, "rn", "DEL", res.Workers)
	})
	b.verifyRaw(t, s, pods, k, layout.nad, "rn", false)
	if nr.RawAdd.BurstMs > 0 {
		nr.BurstRatio = report.Round2(nr.PlugBurst.BurstMs / nr.RawAdd.BurstMs)
	}
	if nr.RawDel.BurstMs > 0 {
		nr.UnplugBurstRatio = report.Round2(nr.UnplugBurst.BurstMs / nr.RawDel.BurstMs)
	}

	start := time.Now()
	b.measure(t, res, "node: teardown of the pods", func() {
		b.deletePods(t, s.Ns, "", 10*time.Minute)
	})
	nr.TeardownMs = report.Ms(time.Since(start))
}

// startFakePods creates the fake node and BENCH_SCALE_PODS pods bound to it, in a namespace of
// their own; all go at the end of the test.
func (b *bench) startFakePods(t *testing.T, nr *report.NodeResult) {
	t.Helper()
	b.createFakeNode(t)
	fakeNS := "bench-scale-" + rand.String(5)
	b.createNamespace(t, fakeNS)
	t.Cleanup(func() {
		start := time.Now()
		b.deletePods(t, fakeNS, "", 10*time.Minute)
		nr.FakeDeleteMs = report.Ms(time.Since(start))
		b.deleteFakeNode(t)
		ctx, cancel := context.WithTimeout(context.Background(), framework.ApiTimeout)
		defer cancel()
		if err := b.kube.CoreV1().Namespaces().Delete(ctx, fakeNS, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Logf("cleanup: deleting namespace %s: %v", fakeNS, err)
		}
	})
	start := time.Now()
	b.createFakePods(t, fakeNS, b.params.ScalePods)
	nr.FakePods, nr.FakeCreateMs = b.params.ScalePods, report.Ms(time.Since(start))
	t.Logf("%d pods of node %s created in %s", nr.FakePods, report.BenchFakeNode, time.Since(start).Round(time.Millisecond))
}

// fillNADs creates NADs in ns, which no pod references, until the cluster holds total, and
// returns how many it holds. NADs of namespaces being deleted (the hotplug part's) do not count.
func (b *bench) fillNADs(t *testing.T, res *report.BenchResult, ns string, total int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute+time.Duration(total)*20*time.Millisecond)
	defer cancel()
	have := func() int {
		namespaces, err := b.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("listing namespaces: %v", err)
		}
		going := map[string]bool{}
		for _, n := range namespaces.Items {
			going[n.Name] = n.DeletionTimestamp != nil
		}
		list, err := b.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("listing NADs: %v", err)
		}
		n := 0
		for _, nad := range list.Items {
			if !going[nad.Namespace] {
				n++
			}
		}
		return n
	}
	n := have()
	if n >= total {
		return n
	}
	missing := total - n
	b.measure(t, res, fmt.Sprintf("node: create %d NADs no pod references", missing), func() {
		err := forEachLimited(ctx, missing, benchNADParallelism, func(ctx context.Context, i int) error {
			name := fmt.Sprintf("unused%04d", i)
			config, err := json.Marshal(map[string]any{
				"cniVersion": "0.4.0", "name": ns + "-" + name, "type": "bridge", "bridge": "npnunused",
				"ipam": map[string]any{"type": "host-local", "dataDir": fw.Env.IPAMDir,
					"ranges": []any{[]any{map[string]any{"subnet": "10.96.0.0/16"}}}},
			})
			if err != nil {
				return err
			}
			callCtx, callCancel := context.WithTimeout(ctx, framework.ApiTimeout)
			defer callCancel()
			_, err = b.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(ns).Create(callCtx, &nadv1.NetworkAttachmentDefinition{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: string(config)},
			}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating NAD %s/%s: %w", ns, name, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	return have()
}

// nadUpdate updates NAD "refd", which layout.refs of the pods reference, and measures what it
// cost netplug: reconciles, /delegate calls and the time until its queues were idle. It fails the
// test if a pod that does not reference the NAD was reconciled or a /delegate call was made.
func (b *bench) nadUpdate(t *testing.T, res *report.BenchResult, ns string, nr *report.NodeResult, layout nodeLayout) *report.NADUpdateResult {
	t.Helper()
	u := &report.NADUpdateResult{NADs: nr.NADs, Pods: nr.Pods, Referencing: layout.refs}
	nads := b.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(ns)
	for attempt := 1; attempt <= benchNADAttempts; attempt++ {
		u.Attempts = attempt
		before := b.waitQuiet(t, benchNodeQuiet, 2*time.Minute)
		if before == nil {
			t.Fatal("the NAD update is measured on netplug's /metrics, which cannot be read")
		}
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
			benchNADTouch: strconv.Itoa(attempt)}}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		start := time.Now()
		if _, err := nads.Patch(ctx, nodeNADRefd, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			cancel()
			t.Fatalf("updating NAD %s/%s: %v", ns, nodeNADRefd, err)
		}
		// Done: at least one reconcile per referencing pod, and nothing left in the queues.
		_, idleAt, err := pollMetrics(ctx, "a reconcile of every referencing pod and idle queues", func(s framework.PromSnapshot) bool {
			return histCount(s, metricReconciles)-histCount(before, metricReconciles) >= layout.refs && queuesIdle(s)
		})
		cancel()
		if err != nil {
			after := framework.ScrapeMetrics()
			t.Fatalf("after the update of NAD %s: %v (%d reconciles for %d referencing pods)", nodeNADRefd, err,
				histCount(after, metricReconciles)-histCount(before, metricReconciles), layout.refs)
		}
		u.HandlerMs = report.Ms(idleAt.Sub(start))
		after := b.waitQuiet(t, benchNodeQuiet, 2*time.Minute)
		u.Reconciles = histCount(after, metricReconciles) - histCount(before, metricReconciles)
		u.ReconcileAvgMs = report.Round2(avgMs(before, after, metricReconciles))
		u.QueueAdds = int(after.Sum(metricQueueAdds, podsQueue) - before.Sum(metricQueueAdds, podsQueue))
		u.PlugCalls = histCount(after, metricPlugs) - histCount(before, metricPlugs)
		u.Failures = int(after.Sum(metricFailures) - before.Sum(metricFailures))
		u.OtherReconciles = max(0, u.Reconciles-layout.refs)
		t.Logf("NAD update %d: %+v", attempt, *u)
		if u.OK() {
			break
		}
		if attempt < benchNADAttempts {
			res.Note(t, "NAD update %d: %d reconciles and %d /delegate calls for %d referencing pods (an informer resync in the window?): once more",
				attempt, u.Reconciles, u.PlugCalls, layout.refs)
		}
	}
	if !u.OK() {
		t.Errorf("one update of NAD %s cost %d reconciles (%d of the %d pods that do not reference it) and %d /delegate calls; want %d and 0",
			nodeNADRefd, u.Reconciles, u.OtherReconciles, u.Pods-u.Referencing, u.PlugCalls, layout.refs)
	}
	return u
}

// restart deletes netplug's pod while every interface of the node part is plugged and measures
// the new process's startup resync, which must not call /delegate.
func (b *bench) restart(t *testing.T, nr *report.NodeResult, pods, ifaces int) {
	t.Helper()
	rs := &report.RestartResult{Pods: pods, Interfaces: pods * ifaces}
	nr.Restart = rs
	before := b.waitQuiet(t, benchNodeQuiet, 2*time.Minute)
	if before == nil {
		t.Fatal("the restart is measured on netplug's /metrics, which cannot be read")
	}
	oldStart := before.Sum(metricProcessStart)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	old, err := fw.NetplugPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.mon = nil // its process is going
	start := time.Now()
	if err := b.kube.CoreV1().Pods(framework.NetplugNamespace).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting netplug pod %s: %v", old.Name, err)
	}
	// The kubelet's view, meanwhile: its readiness probe runs every 5 s.
	apiReady := make(chan error, 1)
	var apiReadyAt time.Time
	go func() {
		_, err := fw.WaitNetplugReady(ctx, old.UID, -1)
		apiReadyAt = time.Now()
		apiReady <- err
	}()
	defer func() {
		if err := <-apiReady; err != nil {
			t.Errorf("netplug's new pod not Ready: %v", err)
			return
		}
		rs.APIReadyMs = report.Ms(apiReadyAt.Sub(start))
	}()

	// The new process, on its own endpoints: /metrics with another start time, then /readyz.
	var newStart float64
	if _, _, err := pollMetrics(ctx, "a new netplug process", func(s framework.PromSnapshot) bool {
		newStart = s.Sum(metricProcessStart)
		return newStart > 0 && newStart != oldStart
	}); err != nil {
		t.Fatal(err)
	}
	rs.ProcessStartMs = report.Ms(time.Unix(0, int64(newStart*1e9)).Sub(start))
	for !readyz(ctx) {
		select {
		case <-ctx.Done():
			t.Fatalf("netplug's new process never answered %s with 200", benchReadyzURL)
		case <-time.After(benchMetricsPoll):
		}
	}
	rs.ReadyMs = report.Ms(time.Since(start))
	// Converged: every pod of the node part reconciled (the informer's initial list queues each
	// pod of the node), nothing left in the queues.
	_, convergedAt, err := pollMetrics(ctx, "the startup resync", func(s framework.PromSnapshot) bool {
		return s.Sum(metricProcessStart) == newStart && s.Sum(metricQueueAdds, podsQueue) >= float64(pods) && queuesIdle(s)
	})
	if err != nil {
		t.Fatal(err)
	}
	rs.ConvergedMs = report.Ms(convergedAt.Sub(start))
	// The new process's counters began at zero.
	after := b.waitQuiet(t, benchNodeQuiet, 2*time.Minute)
	if after == nil || after.Sum(metricProcessStart) != newStart {
		t.Fatal("netplug's /metrics unreadable after the restart, or the process restarted again")
	}
	rs.Reconciles = histCount(after, metricReconciles)
	rs.ReconcileAvgMs = report.Round2(avgMs(nil, after, metricReconciles))
	rs.PlugCalls = histCount(after, metricPlugs)
	rs.Failures = int(after.Sum(metricFailures))
	// What would touch a plugged interface: any ADD, and a DEL that succeeded. A failed DEL right
	// after a start is the retry of an orphan left on the node by an earlier run (a pod deleted
	// while its DEL failed, whose DEL now needs a pod object that is gone): not this resync's.
	rs.TouchCalls = int(after.Sum(metricPlugs+"_count", `operation="add"`) + after.Sum(metricPlugs+"_count", `operation="del"`, `result="success"`))
	t.Logf("restart: %+v", *rs)
	if rs.TouchCalls != 0 {
		t.Errorf("the startup resync of %d plugged interfaces made %d ADD or successful DEL calls (%d /delegate calls in all), want 0", rs.Interfaces, rs.TouchCalls, rs.PlugCalls)
	}

	if b.mon, err = fw.NewProcessMonitor(t); err != nil {
		t.Fatal(err)
	}
	if s, err := b.mon.Sample(); err == nil {
		rs.RSSMiB, rs.AnonMiB = report.Kib2mib(s.RssKiB), report.Kib2mib(s.AnonKiB)
	}
}
