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
		Notes: []string{"a note"},
	}
	r.AddPhase(&PhaseCost{Phase: "netplug plug burst 2x1", WallS: 1, CPUS: 0.5, Metrics: &MetricsDelta{Adds: 2, AddAvgMs: 3}})
	r.Scale = &ScaleResult{FakePods: 5000, LocalPods: 110, Idle: &PhaseCost{WallS: 30, CPUS: 0.01, CPUPercent: 0.03, RSSPeakMiB: 60}}
	expectContains(t, r.Markdown(),
		"### netplug bench: 2 pods × 1 interfaces, node n1, 4 netplug workers (raw parallelism), 2025-01-01T00:00:00Z\n",
		"| plug burst 2×1: first patch → last pod done | 1.20 s | 1.00 s | 1.20× | ≤ 1.5× ok |",
		"| plug per pod p50 / p95 / p99 / max ¹ | 10 / 20 / 20 / 20 ms | 5 / 8 / 8 / 8 ms |  |  |",
		"| single plug p50 (1 pod, 1 iface, 10×) | 120.0 ms | 40.0 ms | +80.0 ms (3.00×) | ≤ raw + 50 ms **MISSED** |",
		"| single unplug p50 | – | – | – |  |",
		"| netplug CPU per plugged interface (burst) | 250.0 ms |",
		"3.0 ms ×2 / 0.0 ms ×0",
		"pods bound to fake node "+BenchFakeNode,
		"| netplug RSS idle with 5000+110 pods (end / peak) | 0.0 / 60.0 MiB | ≤ 50 MiB **MISSED** |",
		"| netplug CPU idle over 30 s | 0.01 s (0.03% of a core) | ~0 (≤ 1%) ok |",
		"- a note\n",
	)
	md := r.Markdown()
	for _, absent := range []string{"RUN FAILED", "unplug burst"} {
		if strings.Contains(md, absent) {
			t.Errorf("the Markdown has %q:\n%s", absent, md)
		}
	}
	r.Failed = true
	if md := r.Markdown(); !strings.Contains(md, " — RUN FAILED, figures incomplete") {
		t.Errorf("a failed run is not marked:\n%s", md)
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
