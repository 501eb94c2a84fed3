package report

import (
	"fmt"
	"strings"
)

// SoakParams are the parameters of a soak run (SOAK_*).
type SoakParams struct {
	Pods   int      `json:"pods"`
	Cycles int      `json:"cycles_planned"`
	Faults []string `json:"faults_planned"`
	Seed   int64    `json:"seed"`
	Out    string   `json:"-"`
}

// FaultRecord is one injected fault, as the report shows it.
type FaultRecord struct {
	Name      string  `json:"name"`
	AtEdit    int64   `json:"at_edit"`
	Seconds   float64 `json:"seconds"`
	Detail    string  `json:"detail"`
	Error     string  `json:"error,omitempty"`
	Restarted bool    `json:"restarted_controller"`
}

// Footprint is the controller's footprint at one point of the soak.
type Footprint struct {
	At         string  `json:"at"`
	PID        int     `json:"pid"`
	Goroutines float64 `json:"goroutines"`
	RSSMiB     float64 `json:"rss_mib"`
	HeapMiB    float64 `json:"heap_inuse_mib"`
	Identity   string  `json:"-"`
}

// SoakResult is what the soak prints at the end, and writes as JSON to SOAK_OUT.
type SoakResult struct {
	Params      SoakParams    `json:"params"`
	Edits       int64         `json:"edits"`
	DoubleEdits int64         `json:"double_edits_within_100ms"`
	Recreations int64         `json:"pods_recreated"`
	Faults      []FaultRecord `json:"faults"`

	SecondWriterWrites    int64    `json:"second_writer_writes"`
	SecondWriterConflicts int64    `json:"second_writer_conflicts"`
	PodVersionsChecked    int64    `json:"pod_versions_checked"`
	Duplicates            int64    `json:"duplicated_entries"`
	DuplicateExamples     []string `json:"duplicate_examples,omitempty"`
	ForeignLost           []string `json:"second_writer_entries_lost"`

	Unconverged      []string `json:"pods_not_converged"`
	InNetnsNotStatus []string `json:"in_netns_not_in_status"`
	InStatusNotNetns []string `json:"in_status_not_in_netns"`
	LeakedIPAM       []string `json:"leaked_ipam_allocations"`
	UnallocatedIPs   []string `json:"status_ips_without_allocation"`
	BridgePorts      int      `json:"bridge_ports"`
	BridgeEntries    int      `json:"bridge_entries_in_status"`

	// DevicesOut are pool devices off the host; DevicesUnaccounted those of them no pod's
	// network-status lists (issue 14: must be none).
	DevicesOut         int      `json:"pool_devices_out"`
	DeviceEntries      int      `json:"device_entries_in_status"`
	DevicesUnaccounted []string `json:"pool_devices_unaccounted"`

	LeakedIPAMAfterDelete []string `json:"leaked_ipam_after_delete"`
	DevicesNotBack        []string `json:"pool_devices_not_back_after_delete"`
	StrayLinksAfterDelete []string `json:"stray_host_links_after_delete"`
	CheckpointsLeft       []string `json:"checkpoints_left_after_delete"`

	Baseline        *Footprint `json:"baseline"`
	BaselineAtEdit  int64      `json:"baseline_at_edit"`
	End             *Footprint `json:"end"`
	GoroutineGrowth float64    `json:"goroutine_growth_pct"`
	RSSGrowth       float64    `json:"rss_growth_pct"`

	ChurnSeconds float64  `json:"churn_seconds"`
	TotalSeconds float64  `json:"total_seconds"`
	Problems     []string `json:"problems"`
}

// Growth is the growth from before to after in percent (0 when before is 0).
func Growth(before, after float64) float64 {
	if before == 0 {
		return 0
	}
	return Round2(100 * (after - before) / before)
}

// Markdown renders the figures as the table the soak prints.
func (r *SoakResult) Markdown() string {
	flat := r.Baseline != nil && r.End != nil
	var b strings.Builder
	row := func(what string, format string, args ...any) {
		fmt.Fprintf(&b, "| %s | %s |\n", what, fmt.Sprintf(format, args...))
	}
	count := func(what string, items []string) {
		if len(items) == 0 {
			row(what, "0")
			return
		}
		shown := items
		if len(shown) > 5 {
			shown = shown[:5]
		}
		row(what, "**%d** (%s)", len(items), strings.Join(shown, "; "))
	}
	fmt.Fprintf(&b, "\n### netplug soak (seed %d)\n\n| | |\n|---|---|\n", r.Params.Seed)
	row("pods", "%d", r.Params.Pods)
	row("edits (random plug / unplug / replug mixes)", "%d, of which %d landed 0-100 ms after the previous one", r.Edits, r.DoubleEdits)
	row("pods deleted and re-created", "%d (each re-created with networks Multus plugs at creation)", r.Recreations)
	var faults []string
	for _, f := range r.Faults {
		state := "ok"
		if f.Error != "" {
			state = "FAILED: " + f.Error
		}
		faults = append(faults, fmt.Sprintf("%s at edit %d, %.1fs, %s", f.Name, f.AtEdit, f.Seconds, state))
	}
	row("faults injected", "%d: %s", len(r.Faults), strings.Join(faults, "; "))
	row("second writer: network-status rewrites (conflicts)", "%d (%d)", r.SecondWriterWrites, r.SecondWriterConflicts)
	row("pod versions checked for duplicated entries", "%d", r.PodVersionsChecked)
	row("duplicated entries seen", "%d", r.Duplicates)
	count("second writer's entries lost", r.ForeignLost)
	count("pods not converged", r.Unconverged)
	count("interfaces in a netns, not in network-status", r.InNetnsNotStatus)
	count("network-status entries with no interface in the netns", r.InStatusNotNetns)
	count("leaked IPAM allocations (pods alive)", r.LeakedIPAM)
	count("network-status addresses with no allocation", r.UnallocatedIPs)
	row("host bridge ports / bridge entries in network-status", "%d / %d", r.BridgePorts, r.BridgeEntries)
	row("pool devices off the host / device entries in network-status", "%d / %d", r.DevicesOut, r.DeviceEntries)
	count("pool devices neither on the host nor in a pod that network-status lists", r.DevicesUnaccounted)
	count("leaked IPAM allocations after deleting the pods", r.LeakedIPAMAfterDelete)
	count("pool devices not back on the host after deleting the pods", r.DevicesNotBack)
	count("host links left after deleting the pods", r.StrayLinksAfterDelete)
	count("checkpoints left after deleting the pods", r.CheckpointsLeft)
	if flat {
		row("controller goroutines, warm-up → end", "%.0f → %.0f (%+.1f %%)", r.Baseline.Goroutines, r.End.Goroutines, r.GoroutineGrowth)
		row("controller RSS, warm-up → end", "%.1f → %.1f MiB (%+.1f %%); heap in use %.1f → %.1f MiB",
			r.Baseline.RSSMiB, r.End.RSSMiB, r.RSSGrowth, r.Baseline.HeapMiB, r.End.HeapMiB)
		row("footprint window", "edit %d → %d, one controller process (pid %d)", r.BaselineAtEdit, r.Edits, r.End.PID)
	}
	row("churn / total time", "%.0fs / %.0fs", r.ChurnSeconds, r.TotalSeconds)
	count("problems", r.Problems)
	return b.String()
}
