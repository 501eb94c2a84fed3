package report

import (
	"fmt"
	"strings"
)

// NodeResult is the node part of the bench: a full node (BENCH_NODE_PODS pods × BENCH_NODE_IFACES
// interfaces, capped by the node's free pod capacity) in a cluster that also holds
// BENCH_SCALE_PODS pods of a fake node and BENCH_NADS NADs. netplug against raw /delegate on the
// same pods, its footprint idle and during the burst, one NAD update, and a restart.
type NodeResult struct {
	FakePods     int     `json:"fake_pods"`
	FakeCreateMs float64 `json:"fake_pods_create_ms"`
	// PodsAsked is BENCH_NODE_PODS; Pods what the node had room for.
	PodsAsked   int     `json:"pods_asked"`
	Pods        int     `json:"pods"`
	Ifaces      int     `json:"ifaces"`
	NADs        int     `json:"nads"`
	PodsReadyMs float64 `json:"pods_ready_ms"`

	BaselineRSSMiB float64    `json:"baseline_rss_mib"`
	Idle           *PhaseCost `json:"idle,omitempty"`

	PlugBurst        *LatencyStats `json:"netplug_plug_burst,omitempty"`
	PlugBurstCost    *PhaseCost    `json:"netplug_plug_burst_cost,omitempty"`
	RawAdd           *LatencyStats `json:"raw_add_burst,omitempty"`
	BurstRatio       float64       `json:"burst_ratio_netplug_over_raw,omitempty"`
	UnplugBurst      *LatencyStats `json:"netplug_unplug_burst,omitempty"`
	RawDel           *LatencyStats `json:"raw_del_burst,omitempty"`
	UnplugBurstRatio float64       `json:"unplug_burst_ratio_netplug_over_raw,omitempty"`

	NADUpdate *NADUpdateResult `json:"nad_update,omitempty"`
	Restart   *RestartResult   `json:"restart,omitempty"`

	FakeDeleteMs float64 `json:"fake_pods_delete_ms"`
	TeardownMs   float64 `json:"pods_teardown_ms"`
}

// NADUpdateResult is what one update of one NAD cost netplug, from its /metrics: Referencing of
// the Pods select the NAD, and only they may be reconciled.
type NADUpdateResult struct {
	NADs        int `json:"nads_in_cluster"`
	Pods        int `json:"pods"`
	Referencing int `json:"pods_referencing"`
	// Attempts is how many updates it took to get one the informers' periodic resync did not
	// overlap (one unless a resync fell into the window); the figures are those of the last.
	Attempts int `json:"attempts"`
	// HandlerMs is from the update request until netplug's work queues were idle again (polled).
	HandlerMs float64 `json:"handler_ms"`
	// Deltas of netplug_reconcile_duration_seconds_count, netplug_workqueue_adds_total{name="pods"}
	// and netplug_plug_duration_seconds_count (/delegate calls) over the update and a settle time.
	Reconciles     int     `json:"reconciles"`
	ReconcileAvgMs float64 `json:"reconcile_avg_ms"`
	QueueAdds      int     `json:"queue_adds"`
	PlugCalls      int     `json:"delegate_calls"`
	Failures       int     `json:"failures"`
	// OtherReconciles is Reconciles beyond one per referencing pod: reconciles of pods that do
	// not reference the NAD (or second ones), which the target wants at 0.
	OtherReconciles int `json:"reconciles_beyond_referencing"`
}

// OK reports whether the update cost no more than the pods that reference the NAD.
func (u *NADUpdateResult) OK() bool {
	return u.OtherReconciles == 0 && u.PlugCalls == 0 && u.Reconciles >= u.Referencing
}

// RestartResult is a restart of netplug (its pod deleted) on a node whose pods are all plugged:
// the startup resync must converge without a single /delegate call.
type RestartResult struct {
	Pods       int `json:"pods"`
	Interfaces int `json:"interfaces"`
	// From the deletion of the old pod: the new process started (its process_start_time_seconds),
	// answered /readyz 200 itself, finished the resync (work queues idle after every pod was
	// reconciled), and its pod was Ready in the API (the kubelet's probe runs every 5 s).
	ProcessStartMs float64 `json:"process_start_ms"`
	ReadyMs        float64 `json:"ready_ms"`
	ConvergedMs    float64 `json:"converged_ms"`
	APIReadyMs     float64 `json:"api_ready_ms,omitempty"`
	// The new process's counters at convergence (they start at zero).
	Reconciles     int     `json:"reconciles"`
	ReconcileAvgMs float64 `json:"reconcile_avg_ms"`
	PlugCalls      int     `json:"delegate_calls"`
	// TouchCalls are the calls that could touch a plugged interface: ADDs and successful DELs (a
	// failing DEL right after a start retries an orphan an earlier run left).
	TouchCalls int     `json:"add_or_successful_del_calls"`
	Failures   int     `json:"failures"`
	RSSMiB     float64 `json:"rss_after_resync_mib,omitempty"`
	AnonMiB    float64 `json:"rss_anon_after_resync_mib,omitempty"`
}

func (n *NodeResult) markdown(sb *strings.Builder, workers int) {
	row := func(cells ...string) { sb.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	fmt.Fprintf(sb, "### A full node: %d pods × %d interfaces (BENCH_NODE_PODS=%d, capped by the node), %d NADs, %d pods of fake node %s (created in %.1f s)\n\n",
		n.Pods, n.Ifaces, n.PodsAsked, n.NADs, n.FakePods, BenchFakeNode, n.FakeCreateMs/1000)
	row("metric", "netplug", "raw /delegate", "netplug vs raw", "target")
	row("---", "---", "---", "---", "---")
	if n.PlugBurst != nil {
		cmp, target := ratioCells(n.PlugBurst, n.RawAdd, n.BurstRatio, TargetNodeBurstRatio)
		row(fmt.Sprintf("plug burst %d×%d, parallelism %d: first patch → last pod done", n.Pods, n.Ifaces, workers),
			fmtBurst(n.PlugBurst), fmtBurst(n.RawAdd), cmp, target)
		p99 := "–"
		if n.RawAdd != nil {
			p99 = fmt.Sprintf("%.0f ms", n.RawAdd.P99Ms)
		}
		row("plug per pod p99", fmt.Sprintf("%.0f ms", n.PlugBurst.P99Ms), p99, "", "printed")
		row("plug per pod p50 / p95 / p99 / max", fmtStats(n.PlugBurst), fmtStats(n.RawAdd), "", "")
	}
	if n.UnplugBurst != nil {
		cmp := "–"
		if n.RawDel != nil && n.RawDel.BurstMs > 0 {
			cmp = fmt.Sprintf("%.2f×", n.UnplugBurstRatio)
		}
		row(fmt.Sprintf("unplug burst %d×%d", n.Pods, n.Ifaces), fmtBurst(n.UnplugBurst), fmtBurst(n.RawDel), cmp, "")
	}
	if n.Idle != nil || n.PlugBurstCost != nil {
		row("", "", "", "", "")
		row("footprint", "netplug", "", "", "target")
	}
	if n.BaselineRSSMiB > 0 {
		row("RSS before the node part", fmt.Sprintf("%.1f MiB", n.BaselineRSSMiB), "", "", "")
	}
	if p := n.Idle; p != nil {
		row(fmt.Sprintf("RSS idle, %d pods in the cluster + %d on the node (end / peak)", n.FakePods, n.Pods),
			fmt.Sprintf("%.1f / %.1f MiB", p.RSSEndMiB, p.RSSPeakMiB), "", "",
			fmt.Sprintf("≤ %d MiB %s", TargetIdleRSSMiB, verdict(p.RSSPeakMiB <= TargetIdleRSSMiB)))
		row("of which anonymous (RssAnon peak; the rest is the executable's pages)", fmt.Sprintf("%.1f MiB", p.AnonPeakMiB), "", "", "")
		row(fmt.Sprintf("CPU idle over %.0f s", p.WallS), fmt.Sprintf("%.2f s (%.2f%% of a core)", p.CPUS, p.CPUPercent), "", "",
			fmt.Sprintf("≤ %.1f%% %s", TargetIdleCPU, verdict(p.CPUPercent <= TargetIdleCPU)))
	}
	if p := n.PlugBurstCost; p != nil {
		row(fmt.Sprintf("RSS peak during the %d-pod burst (sampled) / VmHWM", n.Pods), fmt.Sprintf("%.1f / %.1f MiB", p.RSSPeakMiB, p.HWMMiB), "", "",
			fmt.Sprintf("≤ %d MiB %s", TargetPeakRSSMiB, verdict(p.RSSPeakMiB <= TargetPeakRSSMiB)))
		row("CPU during the burst", fmt.Sprintf("%.2f s (%.1f%% of a core, %.1f ms per interface)", p.CPUS, p.CPUPercent,
			1000*p.CPUS/float64(max(n.Pods*n.Ifaces, 1))), "", "", "")
	}
	if u := n.NADUpdate; u != nil {
		row("", "", "", "", "")
		row(fmt.Sprintf("one NAD update, %d NADs, %d pods, %d referencing it ³", u.NADs, u.Pods, u.Referencing), "", "", "",
			"≤ the referencing pods "+verdict(u.OK()))
		row("handler time: update sent → work queues idle", fmt.Sprintf("%.1f ms", u.HandlerMs), "", "", "printed")
		row("reconciles (queue adds) / /delegate calls", fmt.Sprintf("%d (%d) of %.1f ms avg / %d", u.Reconciles, u.QueueAdds, u.ReconcileAvgMs, u.PlugCalls), "", "",
			fmt.Sprintf("%d / 0", u.Referencing))
		row(fmt.Sprintf("reconciles of the %d pods that do not reference it", u.Pods-u.Referencing), fmt.Sprintf("%d", u.OtherReconciles), "", "",
			"0 "+verdict(u.OtherReconciles == 0))
		if u.Attempts > 1 {
			row("updates needed to get one without an informer resync in the window", fmt.Sprintf("%d", u.Attempts), "", "", "")
		}
	}
	if rs := n.Restart; rs != nil {
		row("", "", "", "", "")
		row(fmt.Sprintf("restart with %d pods, %d plugged interfaces: pod deleted → …", rs.Pods, rs.Interfaces), "", "", "", "")
		row("… new process started", fmt.Sprintf("%.2f s", rs.ProcessStartMs/1000), "", "", "")
		row("… time to ready (/readyz 200 from the new process)", fmt.Sprintf("%.2f s (%.2f s after its start)", rs.ReadyMs/1000,
			(rs.ReadyMs-rs.ProcessStartMs)/1000), "", "", "printed")
		row("… resync converged (every pod reconciled, queues idle)", fmt.Sprintf("%.2f s", rs.ConvergedMs/1000), "", "", "")
		if rs.APIReadyMs > 0 {
			row("… pod Ready in the API (kubelet probe every 5 s)", fmt.Sprintf("%.2f s", rs.APIReadyMs/1000), "", "", "")
		}
		row("/delegate calls after the restart: ADDs and successful DELs (all)", fmt.Sprintf("%d (%d)", rs.TouchCalls, rs.PlugCalls), "", "", "0 "+verdict(rs.TouchCalls == 0))
		row("reconciles after the restart / failures", fmt.Sprintf("%d of %.1f ms avg / %d", rs.Reconciles, rs.ReconcileAvgMs, rs.Failures), "", "", "")
		if rs.RSSMiB > 0 {
			row("RSS of the new process after the resync (RssAnon)", fmt.Sprintf("%.1f MiB (%.1f MiB)", rs.RSSMiB, rs.AnonMiB), "", "", "")
		}
	}
	sb.WriteString("\n")
	if n.NADUpdate != nil {
		sb.WriteString("³ from netplug's /metrics before the update and after its queues were idle for a settle time: " +
			"netplug_reconcile_duration_seconds and netplug_plug_duration_seconds counts, netplug_workqueue_adds_total{name=\"pods\"}. " +
			"Reconciles beyond one per referencing pod are counted as reconciles of pods that do not reference the NAD.\n\n")
	}
}

const (
	// BenchFakeNode is the Node object the scale part binds its never-running pods to.
	BenchFakeNode = "bench-other"
)
