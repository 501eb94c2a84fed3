package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// BenchParams are the parameters of a bench run (BENCH_*).
type BenchParams struct {
	Pods      int `json:"pods"`
	Ifaces    int `json:"ifaces"`
	ScalePods int `json:"scale_pods"`
	// The node part (NodeResult): NodePods pods (capped by the node) × NodeIfaces interfaces,
	// NADs NetworkAttachmentDefinitions in the cluster, NADRefs pods referencing the updated one.
	NodePods   int  `json:"node_pods"`
	NodeIfaces int  `json:"node_ifaces"`
	NADs       int  `json:"nads"`
	NADRefs    int  `json:"nad_refs"`
	Restart    bool `json:"restart"`
	// IdleS is how long the idle cost is measured, in seconds (0: not measured).
	IdleS int    `json:"idle_s"`
	Out   string `json:"-"`
}

// BenchResult is every figure of a bench run: what the bench prints and writes as JSON.
type BenchResult struct {
	Params  BenchParams `json:"params"`
	Started string      `json:"started"`
	Node    string      `json:"node"`
	Failed  bool        `json:"failed"`
	// Netplug's configuration: Workers is also the raw burst's parallelism.
	Workers  int     `json:"netplug_workers"`
	APIQPS   float32 `json:"netplug_api_qps"`
	APIBurst int     `json:"netplug_api_burst"`

	PodsReadyMs float64 `json:"pods_ready_ms"`

	PlugBurst   *LatencyStats `json:"netplug_plug_burst,omitempty"`
	UnplugBurst *LatencyStats `json:"netplug_unplug_burst,omitempty"`
	RawAdd      *LatencyStats `json:"raw_add_burst,omitempty"`
	RawDel      *LatencyStats `json:"raw_del_burst,omitempty"`

	SinglePlug   *LatencyStats `json:"netplug_single_plug,omitempty"`
	SingleUnplug *LatencyStats `json:"netplug_single_unplug,omitempty"`
	SingleRawAdd *LatencyStats `json:"raw_single_add,omitempty"`
	SingleRawDel *LatencyStats `json:"raw_single_del,omitempty"`
	// SingleRawAddAfterPatch are raw ADDs each sent right after a patch of the pod, as netplug's
	// ADD is: what the pod update's fan-out on the node costs the call itself.
	SingleRawAddAfterPatch *LatencyStats `json:"raw_single_add_after_pod_patch,omitempty"`

	BurstRatio             float64 `json:"burst_ratio_netplug_over_raw,omitempty"`
	UnplugBurstRatio       float64 `json:"unplug_burst_ratio_netplug_over_raw,omitempty"`
	SingleP50Ratio         float64 `json:"single_plug_p50_ratio_netplug_over_raw,omitempty"`
	SingleP50DeltaMs       float64 `json:"single_plug_p50_delta_ms,omitempty"`
	SingleUnplugP50DeltaMs float64 `json:"single_unplug_p50_delta_ms,omitempty"`
	// What netplug's own metrics recorded over the single plugs and unplugs, each rep alone:
	// the part of the latency netplug spends in a reconcile, the rest is API and watch.
	SinglePlugMetrics   *MetricsDelta `json:"netplug_single_plug_metrics,omitempty"`
	SingleUnplugMetrics *MetricsDelta `json:"netplug_single_unplug_metrics,omitempty"`

	Phases   []*PhaseCost `json:"phases"`
	FullNode *NodeResult  `json:"full_node,omitempty"`
	Notes    []string     `json:"notes,omitempty"`
	mu       sync.Mutex   `json:"-"`
	byName   map[string]*PhaseCost
}

// AddPhase records the cost of a phase.
func (r *BenchResult) AddPhase(p *PhaseCost) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Phases = append(r.Phases, p)
	if r.byName == nil {
		r.byName = map[string]*PhaseCost{}
	}
	r.byName[p.Phase] = p
}

func (r *BenchResult) phase(name string) *PhaseCost {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byName[name]
}

// Logger is what Note needs of a *testing.T.
type Logger interface {
	Helper()
	Log(args ...any)
}

// Note logs a remark on the run and keeps it for the report.
func (r *BenchResult) Note(t Logger, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	t.Log(msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, msg)
}

// LatencyStats summarises per-pod (or per-call) latencies; BurstMs is first start to last done.
type LatencyStats struct {
	Count   int     `json:"count"`
	P50Ms   float64 `json:"p50_ms"`
	P95Ms   float64 `json:"p95_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
	BurstMs float64 `json:"burst_ms,omitempty"`
}

// Summarize computes the nearest-rank percentiles of latencies; burst is the whole burst.
func Summarize(latencies []time.Duration, burst time.Duration) *LatencyStats {
	sorted := slices.Clone(latencies)
	slices.Sort(sorted)
	s := &LatencyStats{Count: len(sorted), BurstMs: Ms(burst)}
	if len(sorted) == 0 {
		return s
	}
	// Nearest rank: the smallest value with at least p% of the values at or below it.
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
		return Ms(sorted[max(i, 0)])
	}
	s.P50Ms, s.P95Ms, s.P99Ms, s.MaxMs = rank(50), rank(95), rank(99), Ms(sorted[len(sorted)-1])
	return s
}

// Ms is d in milliseconds, rounded to two decimals.
func Ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }

// Kib2mib converts KiB to MiB, rounded to two decimals.
func Kib2mib(k uint64) float64 { return Round2(float64(k) / 1024) }

// PhaseCost is what netplug-controller spent during one phase of the bench.
type PhaseCost struct {
	Phase       string  `json:"phase"`
	WallS       float64 `json:"wall_s"`
	CPUS        float64 `json:"cpu_s"`
	CPUPercent  float64 `json:"cpu_percent_of_one_core"`
	RSSStartMiB float64 `json:"rss_start_mib"`
	RSSEndMiB   float64 `json:"rss_end_mib"`
	RSSPeakMiB  float64 `json:"rss_peak_sampled_mib"`
	HWMMiB      float64 `json:"vmhwm_mib"`
	// AnonPeakMiB is the sampled peak of RssAnon: what the controller allocates, without the
	// file-backed pages of its executable that VmRSS also counts.
	AnonPeakMiB float64 `json:"rss_anon_peak_sampled_mib"`
	// For context: the Multus daemon's CPU and the whole host's (2 cores = 200%).
	MultusCPUS     float64       `json:"multus_cpu_s"`
	HostCPUPercent float64       `json:"host_cpu_percent"`
	Metrics        *MetricsDelta `json:"netplug_metrics,omitempty"`
}

// MetricsDelta is what netplug's histograms recorded during a phase.
type MetricsDelta struct {
	Adds           int     `json:"delegate_adds"`
	AddAvgMs       float64 `json:"delegate_add_avg_ms"`
	Dels           int     `json:"delegate_dels"`
	DelAvgMs       float64 `json:"delegate_del_avg_ms"`
	Reconciles     int     `json:"reconciles"`
	ReconcileAvgMs float64 `json:"reconcile_avg_ms"`
	QueueWaitAvgMs float64 `json:"queue_wait_avg_ms"`
	Failures       int     `json:"failures"`
}

// Merge adds o's counts to m, the averages weighted by the counts; a nil o changes nothing.
func (m *MetricsDelta) Merge(o *MetricsDelta) {
	if o == nil {
		return
	}
	avg := func(n1 int, a1 float64, n2 int, a2 float64) float64 {
		if n1+n2 == 0 {
			return 0
		}
		return Round2((float64(n1)*a1 + float64(n2)*a2) / float64(n1+n2))
	}
	m.AddAvgMs, m.Adds = avg(m.Adds, m.AddAvgMs, o.Adds, o.AddAvgMs), m.Adds+o.Adds
	m.DelAvgMs, m.Dels = avg(m.Dels, m.DelAvgMs, o.Dels, o.DelAvgMs), m.Dels+o.Dels
	// Queue waits are per reconcile of the pods queue; weighting them by reconciles is close
	// enough (the release queue is idle while the bench plugs).
	m.QueueWaitAvgMs = avg(m.Reconciles, m.QueueWaitAvgMs, o.Reconciles, o.QueueWaitAvgMs)
	m.ReconcileAvgMs, m.Reconciles = avg(m.Reconciles, m.ReconcileAvgMs, o.Reconciles, o.ReconcileAvgMs), m.Reconciles+o.Reconciles
	m.Failures += o.Failures
}

// The targets of issue 17, checked side by side with raw /delegate in the same run.
const (
	TargetBurstRatio     = 1.25 // plug and unplug burst 50×2: netplug / raw
	TargetSingleDeltaMs  = 5    // single plug and unplug p50: netplug - raw
	TargetNodeBurstRatio = 1.3  // a full node's plug burst (110 pods × 4): netplug / raw
	TargetIdleRSSMiB     = 30   // RSS idle, 5000 pods in the cluster and 110 on the node
	TargetPeakRSSMiB     = 36   // RSS peak during the full node's burst
	TargetIdleCPU        = 0.5  // % of one core, idle
)

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "**MISSED**"
}

func fmtStats(s *LatencyStats) string {
	if s == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f / %.0f / %.0f / %.0f ms", s.P50Ms, s.P95Ms, s.P99Ms, s.MaxMs)
}

func fmtBurst(s *LatencyStats) string {
	if s == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f s", s.BurstMs/1000)
}

func fmtP50(s *LatencyStats) string {
	if s == nil {
		return "–"
	}
	return fmt.Sprintf("%.1f ms", s.P50Ms)
}

// ratioCells are the "netplug vs raw" and "target" cells of a burst: ratio against max.
func ratioCells(netplug, raw *LatencyStats, ratio, target float64) (cmp, verdictCell string) {
	verdictCell = fmt.Sprintf("≤ %g×", target)
	if netplug == nil || raw == nil || raw.BurstMs <= 0 {
		return "–", verdictCell
	}
	return fmt.Sprintf("%.2f×", ratio), verdictCell + " " + verdict(ratio <= target)
}

// deltaCells are the cells of a single-operation p50: netplug - raw against raw + target ms.
func deltaCells(netplug, raw *LatencyStats, delta float64) (cmp, verdictCell string) {
	verdictCell = fmt.Sprintf("≤ raw + %d ms", TargetSingleDeltaMs)
	if netplug == nil || raw == nil {
		return "–", verdictCell
	}
	cmp = fmt.Sprintf("%+.1f ms", delta)
	if raw.P50Ms > 0 {
		cmp += fmt.Sprintf(" (%.2f×)", netplug.P50Ms/raw.P50Ms)
	}
	return cmp, verdictCell + " " + verdict(delta <= TargetSingleDeltaMs)
}

// breakdown is what netplug's own metrics say of a single operation: its reconciles (the first
// does the work; netplug's own writes bring the pod back for another), the reconcile time and
// the /delegate call time per operation, and the mean wait in the queue.
func breakdown(s *LatencyStats, m *MetricsDelta, op string) string {
	if s == nil || m == nil || m.Reconciles == 0 {
		return "–"
	}
	calls, callMs := m.Adds, m.AddAvgMs
	if op == "DEL" {
		calls, callMs = m.Dels, m.DelAvgMs
	}
	ops := float64(max(s.Count, 1))
	return fmt.Sprintf("per op: %.1f reconciles, %.1f ms reconciling, %s %.1f ms (%d calls); queue wait %.1f ms avg",
		float64(m.Reconciles)/ops, float64(m.Reconciles)*m.ReconcileAvgMs/ops, op, float64(calls)*callMs/ops, calls, m.QueueWaitAvgMs)
}

// Markdown renders every figure the run produced; parts that did not run are left out.
func (r *BenchResult) Markdown() string {
	var sb strings.Builder
	row := func(cells ...string) { sb.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	n, k := r.Params.Pods, r.Params.Ifaces
	fmt.Fprintf(&sb, "### netplug bench: %d pods × %d interfaces, node %s, %d netplug workers (raw parallelism), %s%s\n\n",
		n, k, r.Node, r.Workers, r.Started, map[bool]string{true: " — RUN FAILED, figures incomplete", false: ""}[r.Failed])
	row("metric", "netplug", "raw /delegate", "netplug vs raw", "target")
	row("---", "---", "---", "---", "---")
	if r.PlugBurst != nil {
		cmp, target := ratioCells(r.PlugBurst, r.RawAdd, r.BurstRatio, TargetBurstRatio)
		row(fmt.Sprintf("plug burst %d×%d: first patch → last pod done", n, k), fmtBurst(r.PlugBurst), fmtBurst(r.RawAdd), cmp, target)
		row("plug per pod p50 / p95 / p99 / max ¹", fmtStats(r.PlugBurst), fmtStats(r.RawAdd), "", "")
	}
	if r.UnplugBurst != nil {
		cmp, target := ratioCells(r.UnplugBurst, r.RawDel, r.UnplugBurstRatio, TargetBurstRatio)
		row(fmt.Sprintf("unplug burst %d×%d", n, k), fmtBurst(r.UnplugBurst), fmtBurst(r.RawDel), cmp, target)
		row("unplug per pod p50 / p95 / p99 / max ¹", fmtStats(r.UnplugBurst), fmtStats(r.RawDel), "", "")
	}
	if r.SinglePlug != nil {
		cmp, target := deltaCells(r.SinglePlug, r.SingleRawAdd, r.SingleP50DeltaMs)
		row(fmt.Sprintf("single plug p50 (1 pod, 1 iface, %d×) ²", r.SinglePlug.Count), fmtP50(r.SinglePlug), fmtP50(r.SingleRawAdd), cmp, target)
		row("single plug p50 / p95 / p99 / max", fmtStats(r.SinglePlug), fmtStats(r.SingleRawAdd), "", "")
		row("single plug, netplug's own metrics", breakdown(r.SinglePlug, r.SinglePlugMetrics, "ADD"), "", "", "")
		if r.SingleRawAddAfterPatch != nil {
			row("raw ADD right after a patch of the pod †", "", fmtStats(r.SingleRawAddAfterPatch), "", "")
		}
	}
	if r.SingleUnplug != nil {
		cmp, target := deltaCells(r.SingleUnplug, r.SingleRawDel, r.SingleUnplugP50DeltaMs)
		row(fmt.Sprintf("single unplug p50 (%d×) ²", r.SingleUnplug.Count), fmtP50(r.SingleUnplug), fmtP50(r.SingleRawDel), cmp, target)
		row("single unplug p50 / p95 / p99 / max", fmtStats(r.SingleUnplug), fmtStats(r.SingleRawDel), "", "")
		row("single unplug, netplug's own metrics", breakdown(r.SingleUnplug, r.SingleUnplugMetrics, "DEL"), "", "", "")
	}
	if p := r.phase(fmt.Sprintf("netplug plug burst %dx%d", n, k)); p != nil {
		row("netplug CPU per plugged interface (burst)", fmt.Sprintf("%.1f ms", 1000*p.CPUS/float64(n*k)), "", "", "")
	}
	sb.WriteString("\n¹ netplug: from the pod's own patch until network-status lists all its interfaces and they are up in its netns. " +
		"raw: from the burst's start until the pod's last /delegate call returned.\n" +
		"² each rep starts on an idle netplug (work queue empty, nothing in flight); raw: the /delegate call alone.\n" +
		"† the same call sent right after a patch of the pod, as netplug's ADD is (its user's patch and finalizer reach the kubelet, Multus and netplug first).\n\n")

	if len(r.Phases) > 0 {
		sb.WriteString("netplug-controller by phase (CPU from /proc/PID/stat, RSS sampled every 100 ms; VmHWM is the process's lifetime peak; " +
			"host CPU: 100% = one core busy)\n\n")
		row("phase", "wall", "netplug CPU", "% of a core", "RSS start / end / peak", "RssAnon peak", "VmHWM", "Multus CPU", "host CPU",
			"netplug ADD / DEL avg", "reconcile avg", "queue wait avg")
		row("---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:")
		for _, p := range r.Phases {
			addDel, rec, queue := "–", "–", "–"
			if m := p.Metrics; m != nil {
				addDel = fmt.Sprintf("%.1f ms ×%d / %.1f ms ×%d", m.AddAvgMs, m.Adds, m.DelAvgMs, m.Dels)
				rec = fmt.Sprintf("%.1f ms ×%d", m.ReconcileAvgMs, m.Reconciles)
				queue = fmt.Sprintf("%.1f ms", m.QueueWaitAvgMs)
			}
			row(p.Phase, fmt.Sprintf("%.2f s", p.WallS), fmt.Sprintf("%.2f s", p.CPUS), fmt.Sprintf("%.1f%%", p.CPUPercent),
				fmt.Sprintf("%.1f / %.1f / %.1f MiB", p.RSSStartMiB, p.RSSEndMiB, p.RSSPeakMiB), fmt.Sprintf("%.1f MiB", p.AnonPeakMiB),
				fmt.Sprintf("%.1f MiB", p.HWMMiB),
				fmt.Sprintf("%.2f s", p.MultusCPUS), fmt.Sprintf("%.0f%%", p.HostCPUPercent), addDel, rec, queue)
		}
		sb.WriteString("\n")
	}

	if r.FullNode != nil {
		r.FullNode.markdown(&sb, r.Workers)
	}
	for _, note := range r.Notes {
		sb.WriteString("- " + note + "\n")
	}
	return sb.String()
}
