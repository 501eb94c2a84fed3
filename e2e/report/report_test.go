package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var latencies []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		latencies = append(latencies, time.Duration(i)*time.Millisecond)
	}
	got := Summarize(latencies, 1500*time.Millisecond)
	want := LatencyStats{Count: 100, P50Ms: 50, P95Ms: 95, P99Ms: 99, MaxMs: 100, BurstMs: 1500}
	if *got != want {
		t.Errorf("Summarize = %+v, want %+v", *got, want)
	}
	if latencies[0] != 100*time.Millisecond {
		t.Error("Summarize sorted its argument")
	}
	if got := Summarize(nil, 0); *got != (LatencyStats{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", *got)
	}
	// Nearest rank of 3 values: p50 is the 2nd, p95 and p99 the 3rd.
	if got := Summarize([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond}, 0); got.P50Ms != 2 || got.P95Ms != 3 || got.P99Ms != 3 {
		t.Errorf("Summarize of 3 = %+v", *got)
	}
}

func TestUnits(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"Ms", Ms(1234567 * time.Microsecond), 1234.57},
		{"Ms small", Ms(4 * time.Microsecond), 0},
		{"Round2", Round2(2.345678), 2.35},
		{"Kib2mib", Kib2mib(1536), 1.5},
		{"Kib2mib rounds", Kib2mib(1000), 0.98},
		{"Growth", Growth(100, 150), 50},
		{"Growth shrink", Growth(200, 150), -25},
		{"Growth from zero", Growth(0, 5), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

type fakeLogger struct{ lines []string }

func (l *fakeLogger) Helper()         {}
func (l *fakeLogger) Log(args ...any) { l.lines = append(l.lines, fmt.Sprint(args...)) }

func TestBenchPhasesAndNotes(t *testing.T) {
	r := &BenchResult{}
	p := &PhaseCost{Phase: "idle", CPUS: 1}
	r.AddPhase(p)
	if r.phase("idle") != p || r.phase("other") != nil || len(r.Phases) != 1 {
		t.Errorf("phases: %+v", r.Phases)
	}
	var l fakeLogger
	r.Note(&l, "%d pods", 3)
	if len(r.Notes) != 1 || r.Notes[0] != "3 pods" || len(l.lines) != 1 || l.lines[0] != "3 pods" {
		t.Errorf("notes %q, logged %q", r.Notes, l.lines)
	}
}

func TestBenchMarkdown(t *testing.T) {
	r := &BenchResult{
		Params: BenchParams{Pods: 2, Ifaces: 1}, Node: "n1", Workers: 4, Started: "2025-01-01T00:00:00Z",
		PlugBurst:  &LatencyStats{Count: 2, P50Ms: 10, P95Ms: 20, P99Ms: 20, MaxMs: 20, BurstMs: 1200},
		RawAdd:     &LatencyStats{Count: 2, P50Ms: 5, P95Ms: 8, P99Ms: 8, MaxMs: 8, BurstMs: 1000},
		BurstRatio: 1.2,
		SinglePlug: &LatencyStats{Count: 10, P50Ms: 120}, SingleRawAdd: &LatencyStats{Count: 10, P50Ms: 40},
		SingleP50DeltaMs: 80, SingleP50Ratio: 3,
		SinglePlugMetrics: &MetricsDelta{Reconciles: 20, ReconcileAvgMs: 30, Adds: 10, AddAvgMs: 12, QueueWaitAvgMs: 1},
		SingleUnplug:      &LatencyStats{Count: 10, P50Ms: 14}, SingleRawDel: &LatencyStats{Count: 10, P50Ms: 10},
		SingleUnplugP50DeltaMs: 4,
		SingleRawAddAfterPatch: &LatencyStats{Count: 10, P50Ms: 25, P95Ms: 30, P99Ms: 31, MaxMs: 31},
		Notes:                  []string{"a note"},
	}
	r.AddPhase(&PhaseCost{Phase: "netplug plug burst 2x1", WallS: 1, CPUS: 0.5, Metrics: &MetricsDelta{Adds: 2, AddAvgMs: 3}})
	expectContains(t, r.Markdown(),
		"### netplug bench: 2 pods × 1 interfaces, node n1, 4 netplug workers (raw parallelism), 2025-01-01T00:00:00Z\n",
		"| plug burst 2×1: first patch → last pod done | 1.20 s | 1.00 s | 1.20× | ≤ 1.25× ok |",
		"| plug per pod p50 / p95 / p99 / max ¹ | 10 / 20 / 20 / 20 ms | 5 / 8 / 8 / 8 ms |  |  |",
		"| single plug p50 (1 pod, 1 iface, 10×) ² | 120.0 ms | 40.0 ms | +80.0 ms (3.00×) | ≤ raw + 5 ms **MISSED** |",
		// 20 reconciles of 30 ms and 10 ADDs of 12 ms over 10 plugs.
		"| single plug, netplug's own metrics | per op: 2.0 reconciles, 60.0 ms reconciling, ADD 12.0 ms (10 calls); queue wait 1.0 ms avg |",
		"| raw ADD right after a patch of the pod † |  | 25 / 30 / 31 / 31 ms |  |  |",
		"| single unplug p50 (10×) ² | 14.0 ms | 10.0 ms | +4.0 ms (1.40×) | ≤ raw + 5 ms ok |",
		"| single unplug, netplug's own metrics | – |",
		"| netplug CPU per plugged interface (burst) | 250.0 ms |",
		"3.0 ms ×2 / 0.0 ms ×0",
		"- a note\n",
	)
	md := r.Markdown()
	for _, absent := range []string{"RUN FAILED", "unplug burst", "A full node"} {
		if strings.Contains(md, absent) {
			t.Errorf("the Markdown has %q:\n%s", absent, md)
		}
	}
	// Without raw figures there is no ratio and no verdict.
	r.RawAdd, r.SingleRawAdd = nil, nil
	expectContains(t, r.Markdown(),
		"| plug burst 2×1: first patch → last pod done | 1.20 s | – | – | ≤ 1.25× |",
		"| single plug p50 (1 pod, 1 iface, 10×) ² | 120.0 ms | – | – | ≤ raw + 5 ms |")
	r.Failed = true
	if md := r.Markdown(); !strings.Contains(md, " — RUN FAILED, figures incomplete") {
		t.Errorf("a failed run is not marked:\n%s", md)
	}
}

func TestNodeMarkdown(t *testing.T) {
	r := &BenchResult{Params: BenchParams{Pods: 2, Ifaces: 1}, Workers: 8}
	r.FullNode = &NodeResult{
		FakePods: 5000, FakeCreateMs: 61000, PodsAsked: 110, Pods: 104, Ifaces: 4, NADs: 500,
		Idle:          &PhaseCost{WallS: 30, CPUS: 0.03, CPUPercent: 0.1, RSSEndMiB: 28, RSSPeakMiB: 29.5, AnonPeakMiB: 9},
		PlugBurst:     &LatencyStats{Count: 104, P50Ms: 2000, P95Ms: 3500, P99Ms: 3900, MaxMs: 4000, BurstMs: 5200},
		RawAdd:        &LatencyStats{Count: 104, P50Ms: 1800, P95Ms: 3000, P99Ms: 3300, MaxMs: 3400, BurstMs: 4000},
		BurstRatio:    1.3,
		PlugBurstCost: &PhaseCost{CPUS: 4.16, CPUPercent: 80, RSSPeakMiB: 37, HWMMiB: 38},
		UnplugBurst:   &LatencyStats{BurstMs: 3000}, RawDel: &LatencyStats{BurstMs: 2000}, UnplugBurstRatio: 1.5,
		NADUpdate: &NADUpdateResult{NADs: 500, Pods: 104, Referencing: 10, Attempts: 2, HandlerMs: 42.5,
			Reconciles: 10, QueueAdds: 10, ReconcileAvgMs: 1.5},
		Restart: &RestartResult{Pods: 104, Interfaces: 416, ProcessStartMs: 1500, ReadyMs: 2250, ConvergedMs: 3000,
			APIReadyMs: 6000, Reconciles: 105, ReconcileAvgMs: 4, PlugCalls: 2, TouchCalls: 1, RSSMiB: 27, AnonMiB: 8},
	}
	expectContains(t, r.Markdown(),
		"### A full node: 104 pods × 4 interfaces (BENCH_NODE_PODS=110, capped by the node), 500 NADs, 5000 pods of fake node "+BenchFakeNode+" (created in 61.0 s)\n",
		"| plug burst 104×4, parallelism 8: first patch → last pod done | 5.20 s | 4.00 s | 1.30× | ≤ 1.3× ok |",
		"| plug per pod p99 | 3900 ms | 3300 ms |  | printed |",
		"| unplug burst 104×4 | 3.00 s | 2.00 s | 1.50× |  |",
		"| RSS idle, 5000 pods in the cluster + 104 on the node (end / peak) | 28.0 / 29.5 MiB |  |  | ≤ 30 MiB ok |",
		"| CPU idle over 30 s | 0.03 s (0.10% of a core) |  |  | ≤ 0.5% ok |",
		"| RSS peak during the 104-pod burst (sampled) / VmHWM | 37.0 / 38.0 MiB |  |  | ≤ 36 MiB **MISSED** |",
		"| CPU during the burst | 4.16 s (80.0% of a core, 10.0 ms per interface) |",
		"| one NAD update, 500 NADs, 104 pods, 10 referencing it ³ |  |  |  | ≤ the referencing pods ok |",
		"| handler time: update sent → work queues idle | 42.5 ms |  |  | printed |",
		"| reconciles (queue adds) / /delegate calls | 10 (10) of 1.5 ms avg / 0 |  |  | 10 / 0 |",
		"| reconciles of the 94 pods that do not reference it | 0 |  |  | 0 ok |",
		"| updates needed to get one without an informer resync in the window | 2 |",
		"| restart with 104 pods, 416 plugged interfaces: pod deleted → … |",
		"| … new process started | 1.50 s |",
		"| … time to ready (/readyz 200 from the new process) | 2.25 s (0.75 s after its start) |  |  | printed |",
		"| … resync converged (every pod reconciled, queues idle) | 3.00 s |",
		"| … pod Ready in the API (kubelet probe every 5 s) | 6.00 s |",
		"| /delegate calls after the restart: ADDs and successful DELs (all) | 1 (2) |  |  | 0 **MISSED** |",
		"| reconciles after the restart / failures | 105 of 4.0 ms avg / 0 |",
		"| RSS of the new process after the resync (RssAnon) | 27.0 MiB (8.0 MiB) |",
		"³ from netplug's /metrics",
	)
	// A NAD update that reconciled a pod that does not reference it, or called Multus, misses.
	u := r.FullNode.NADUpdate
	u.Reconciles, u.OtherReconciles = 11, 1
	expectContains(t, r.Markdown(), "| reconciles of the 94 pods that do not reference it | 1 |  |  | 0 **MISSED** |",
		"≤ the referencing pods **MISSED**")
	u.Reconciles, u.OtherReconciles, u.PlugCalls = 10, 0, 2
	if u.OK() {
		t.Error("an update with /delegate calls is OK")
	}
	u.PlugCalls, u.Reconciles = 0, 9
	if u.OK() {
		t.Error("an update that reconciled fewer pods than reference the NAD is OK")
	}
	// The parts that did not run are left out.
	r.FullNode = &NodeResult{Pods: 2, Ifaces: 1}
	md := r.Markdown()
	for _, absent := range []string{"footprint", "NAD update", "restart", "³"} {
		if strings.Contains(md, absent) {
			t.Errorf("the Markdown of an empty node part has %q:\n%s", absent, md)
		}
	}
}

func TestMetricsDeltaMerge(t *testing.T) {
	m := &MetricsDelta{}
	m.Merge(&MetricsDelta{Adds: 1, AddAvgMs: 10, Reconciles: 2, ReconcileAvgMs: 20, QueueWaitAvgMs: 1, Failures: 1})
	m.Merge(nil)
	m.Merge(&MetricsDelta{Adds: 3, AddAvgMs: 30, Dels: 2, DelAvgMs: 5, Reconciles: 2, ReconcileAvgMs: 10, QueueWaitAvgMs: 3})
	want := MetricsDelta{Adds: 4, AddAvgMs: 25, Dels: 2, DelAvgMs: 5, Reconciles: 4, ReconcileAvgMs: 15, QueueWaitAvgMs: 2, Failures: 1}
	if *m != want {
		t.Errorf("Merge = %+v, want %+v", *m, want)
	}
}

func TestSoakMarkdown(t *testing.T) {
	r := &SoakResult{
		Params: SoakParams{Pods: 6, Seed: 42},
		Edits:  120, DoubleEdits: 3,
		Faults: []FaultRecord{
			{Name: "controller-kill", AtEdit: 10, Seconds: 1.25},
			{Name: "multus-restart", AtEdit: 50, Seconds: 3, Error: "boom"},
		},
		LeakedIPAM:      []string{"a:1", "a:2", "a:3", "a:4", "a:5", "a:6"},
		Baseline:        &Footprint{Goroutines: 100, RSSMiB: 20, HeapMiB: 5, PID: 7},
		End:             &Footprint{Goroutines: 110, RSSMiB: 22, HeapMiB: 6, PID: 7},
		GoroutineGrowth: 10, RSSGrowth: 10, BaselineAtEdit: 60,
	}
	expectContains(t, r.Markdown(),
		"\n### netplug soak (seed 42)\n\n| | |\n|---|---|\n",
		"| pods | 6 |",
		"| edits (random plug / unplug / replug mixes) | 120, of which 3 landed 0-100 ms after the previous one |",
		"| faults injected | 2: controller-kill at edit 10, 1.2s, ok; multus-restart at edit 50, 3.0s, FAILED: boom |",
		"| leaked IPAM allocations (pods alive) | **6** (a:1; a:2; a:3; a:4; a:5) |",
		"| pods not converged | 0 |",
		"| controller goroutines, warm-up → end | 100 → 110 (+10.0 %) |",
		"| footprint window | edit 60 → 120, one controller process (pid 7) |",
	)
	r.End = nil
	if md := r.Markdown(); strings.Contains(md, "footprint window") {
		t.Errorf("footprint rows without an end footprint:\n%s", md)
	}
}

func TestWriteJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "bench.json")
	in := &BenchResult{Params: BenchParams{Pods: 3, Out: "not written"}, PlugBurst: &LatencyStats{Count: 3}}
	if err := WriteJSON(path, in); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(raw), "}\n") || !strings.Contains(string(raw), "\n  \"params\": {") {
		t.Errorf("not indented JSON with a final newline:\n%s", raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if _, ok := out["netplug_plug_burst"]; !ok {
		t.Errorf("no netplug_plug_burst in %s", raw)
	}
	if strings.Contains(string(raw), "not written") || strings.Contains(string(raw), "byName") {
		t.Errorf("unexported or json:\"-\" fields written: %s", raw)
	}
	if err := WriteJSON(path, func() {}); err == nil {
		t.Error("WriteJSON of a func did not fail")
	}
}

// expectContains fails t for every one of wants that md lacks.
func expectContains(t *testing.T, md string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown lacks %q:\n%s", want, md)
		}
	}
}
