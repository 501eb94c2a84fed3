//go:build e2e

package soak

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netplug/netplug/e2e/framework"
	"github.com/netplug/netplug/e2e/report"
)

// finalChecks waits for every pod to converge and counts, with the pods alive, what disagrees.
func (s *soak) finalChecks(ctx context.Context) {
	r := &s.res
	for _, p := range s.pods {
		if err := s.waitConverged(ctx, p); err != nil {
			r.Unconverged = append(r.Unconverged, fmt.Sprintf("%s: %v", p.name, err))
		}
	}
	statusIPs := map[string][]string{} // network -> addresses network-status reports
	for _, p := range s.pods {
		callCtx, cancel := context.WithTimeout(ctx, framework.ApiTimeout)
		pod, err := s.Kube.CoreV1().Pods(s.Ns).Get(callCtx, p.name, metav1.GetOptions{})
		if err != nil {
			cancel()
			s.problem("final checks: %v", err)
			continue
		}
		links, err := s.PodLinks(callCtx, pod)
		cancel()
		statuses, stErr := soakStatus(pod)
		if err != nil || stErr != nil {
			s.problem("final checks: pod %s: %v %v", p.name, err, stErr)
			continue
		}
		inNetns, inStatus := linkMismatches(links, statuses)
		for _, n := range inNetns {
			r.InNetnsNotStatus = append(r.InNetnsNotStatus, p.name+"/"+n)
		}
		for _, n := range inStatus {
			r.InStatusNotNetns = append(r.InStatusNotNetns, p.name+"/"+n)
		}
		if lost := s.foreignEntryLost(pod); lost != "" {
			r.ForeignLost = append(r.ForeignLost, lost)
		}
		for _, st := range statuses {
			if st.Name == s.Ns+"/dv" {
				r.DeviceEntries++
			}
			statusIPs[st.Name] = append(statusIPs[st.Name], ipsOf(st.IPs)...)
			if _, ok := soakBridges[strings.TrimPrefix(st.Name, s.Ns+"/")]; ok {
				r.BridgeEntries++
			}
		}
	}
	// A device off the host is in a pod (netplug renames it there): as many as network-status
	// lists dv entries, or one is unaccounted for.
	var out []string
	for _, d := range s.devices {
		if _, err := netlink.LinkByName(d); err != nil {
			out = append(out, d)
		}
	}
	r.DevicesOut = len(out)
	if len(out) != r.DeviceEntries {
		r.DevicesUnaccounted = append(r.DevicesUnaccounted, fmt.Sprintf("%d off the host (%s), %d in network-status",
			len(out), strings.Join(out, ","), r.DeviceEntries))
	}
	for _, nad := range []string{"a", "b", "dv"} {
		allocated, err := s.IpamAllocations(nad)
		if err != nil {
			s.problem("final checks: %v", err)
		}
		reported := statusIPs[s.Ns+"/"+nad]
		for _, ip := range allocated {
			if !slices.Contains(reported, ip) {
				r.LeakedIPAM = append(r.LeakedIPAM, nad+":"+ip)
			}
		}
		for _, ip := range reported {
			if !slices.Contains(allocated, ip) {
				r.UnallocatedIPs = append(r.UnallocatedIPs, nad+":"+ip)
			}
		}
	}
	for _, bridge := range soakBridges {
		r.BridgePorts += bridgePorts(bridge)
	}
}

// deleteAllAndCount deletes every pod, waits until they are gone, and counts what is left on
// the node: host-local allocations, host links that were not there before, checkpoints.
func (s *soak) deleteAllAndCount(hostLinksBefore map[int]netlink.Link) {
	ctx, cancel := context.WithTimeout(context.Background(), soakConverge)
	defer cancel()
	r := &s.res
	for _, p := range s.pods {
		if err := s.deletePod(ctx, p); err != nil {
			s.problem("deleting pod %s: %v", p.name, err)
		}
	}
	for _, p := range s.pods {
		if err := s.waitGone(ctx, p); err != nil {
			s.problem("pod %s not gone: %v", p.name, err)
		}
	}
	// The kubelet's teardown and netplug's release run right before the pod object goes.
	_ = s.poll(ctx, 30*time.Second, func(context.Context) (bool, string) {
		a, _ := s.IpamAllocations("a")
		b, _ := s.IpamAllocations("b")
		dv, _ := s.IpamAllocations("dv")
		return len(a)+len(b)+len(dv) == 0, "allocations left"
	})
	for _, d := range s.devices {
		if _, err := netlink.LinkByName(d); err != nil {
			r.DevicesNotBack = append(r.DevicesNotBack, d)
		}
	}
	for _, nad := range []string{"a", "b", "dv"} {
		ips, _ := s.IpamAllocations(nad)
		for _, ip := range ips {
			r.LeakedIPAMAfterDelete = append(r.LeakedIPAMAfterDelete, nad+":"+ip)
		}
	}
	now, err := netlinkLinks()
	if err != nil {
		s.problem("listing host links: %v", err)
	}
	for idx, link := range now {
		// Bridges are made by the bridge plugin on first use and never removed by a DEL; a pool
		// device back from a pod may have a new index (DevicesNotBack counts those).
		if _, ok := hostLinksBefore[idx]; !ok && link.Type() != "bridge" && !slices.Contains(s.devices, link.Attrs().Name) {
			r.StrayLinksAfterDelete = append(r.StrayLinksAfterDelete, link.Attrs().Name)
		}
	}
	sort.Strings(r.StrayLinksAfterDelete)
	checkpoints := filepath.Join(s.Env.ClusterDir, "netplug", "checkpoints")
	for _, p := range s.pods {
		for _, uid := range p.uids {
			files, _ := filepath.Glob(filepath.Join(checkpoints, string(uid), "*"))
			r.CheckpointsLeft = append(r.CheckpointsLeft, files...)
		}
	}
}

// netlinkLinks lists the links of the test's (the host's) network namespace by index.
func netlinkLinks() (map[int]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	out := make(map[int]netlink.Link, len(links))
	for _, l := range links {
		out[l.Attrs().Index] = l
	}
	return out, nil
}

// bridgePorts counts the links enslaved to the host bridge (0 if it does not exist).
func bridgePorts(bridge string) int {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return 0
	}
	links, err := netlink.LinkList()
	if err != nil {
		return 0
	}
	n := 0
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			n++
		}
	}
	return n
}

// report prints the figures, writes them as JSON, and fails the test on anything not zero.
func (s *soak) report() {
	t, r := s.T, &s.res
	r.Edits, r.DoubleEdits, r.Recreations = s.cycles.Load(), s.doubleEdits.Load(), s.recreations.Load()
	r.SecondWriterWrites, r.SecondWriterConflicts = s.writer.writes.Load(), s.writer.conflicts.Load()
	r.PodVersionsChecked, r.Duplicates = s.dupes.seen.Load(), s.dupes.dupes.Load()
	s.dupes.mu.Lock()
	r.DuplicateExamples = slices.Clone(s.dupes.examples)
	s.dupes.mu.Unlock()
	flat := r.Baseline != nil && r.End != nil
	if flat {
		r.GoroutineGrowth = report.Growth(r.Baseline.Goroutines, r.End.Goroutines)
		r.RSSGrowth = report.Growth(r.Baseline.RSSMiB, r.End.RSSMiB)
		if r.Baseline.Identity != r.End.Identity {
			s.problem("the controller process changed between the baseline (pid %d) and the end (pid %d)", r.Baseline.PID, r.End.PID)
		}
		if r.GoroutineGrowth > 100*soakFlatTolerance || r.RSSGrowth > 100*soakFlatTolerance {
			s.problem("goroutines %+.1f %%, RSS %+.1f %% from warm-up to the end (at most %+.0f %%)",
				r.GoroutineGrowth, r.RSSGrowth, 100*soakFlatTolerance)
		}
	}
	s.mu.Lock()
	r.Problems = slices.Clone(s.problems)
	s.mu.Unlock()

	fmt.Print(r.Markdown() + "\n")

	if err := report.WriteJSON(s.params.Out, r); err == nil {
		t.Logf("soak figures in %s", s.params.Out)
	}

	for what, items := range map[string][]string{
		"second writer's entries lost": r.ForeignLost, "pods not converged": r.Unconverged,
		"interfaces in a netns but not in network-status": r.InNetnsNotStatus,
		"network-status entries without an interface":     r.InStatusNotNetns,
		"leaked IPAM allocations":                         r.LeakedIPAM, "addresses without allocation": r.UnallocatedIPs,
		"leaked IPAM allocations after deletion": r.LeakedIPAMAfterDelete, "host links left": r.StrayLinksAfterDelete,
		"pool devices unaccounted for": r.DevicesUnaccounted, "pool devices not back on the host": r.DevicesNotBack,
		"checkpoints left": r.CheckpointsLeft, "problems": r.Problems,
	} {
		if len(items) > 0 {
			t.Errorf("%s: %d: %s", what, len(items), strings.Join(items, "\n  "))
		}
	}
	if r.Duplicates > 0 {
		t.Errorf("%d pod versions listed an entry twice: %s", r.Duplicates, strings.Join(r.DuplicateExamples, "\n  "))
	}
	if r.BridgePorts != r.BridgeEntries {
		t.Errorf("%d ports on the soak's host bridges for %d bridge entries in network-status", r.BridgePorts, r.BridgeEntries)
	}
	if len(s.params.Faults) > 0 && len(r.Faults) != len(s.params.Faults) {
		t.Errorf("%d faults injected, %d planned", len(r.Faults), len(s.params.Faults))
	}
	if t.Failed() {
		s.DumpIfFailed()
	}
}
