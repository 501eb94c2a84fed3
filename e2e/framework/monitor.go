//go:build e2e

package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/netplug/netplug/e2e/report"
)

// ProcSample is one reading of a process, and of the host's CPU counters.
type ProcSample struct {
	At              time.Time
	CpuTicks        uint64 // utime + stime
	RssKiB, HwmKiB  uint64 // VmRSS, VmHWM (peak RSS since the process started)
	AnonKiB         uint64 // RssAnon: heap, stacks; the rest of VmRSS is mostly the binary's pages
	HostBusy, Total uint64 // /proc/stat "cpu" line: non-idle and all ticks, over all CPUs
	MultusTicks     uint64
}

// ProcessMonitor reads the netplug-controller process of the node's netplug pod (and, for
// context, the Multus daemon and the host's CPU counters).
type ProcessMonitor struct {
	Pid, multusPID int
	StartTicks     string
	podUID         types.UID
	restarts       int32
}

func (f *Framework) NewProcessMonitor(t *testing.T) (*ProcessMonitor, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ApiTimeout)
	defer cancel()
	pod, err := f.NetplugPod(ctx)
	if err != nil {
		return nil, err
	}
	pids, err := ContainerProcesses(pod.UID, "netplug-controller")
	if err != nil {
		return nil, fmt.Errorf("scanning /proc: %w", err)
	}
	if len(pids) != 1 {
		return nil, fmt.Errorf("found %d netplug-controller processes in pod %s (%v), want 1", len(pids), pod.Name, pids)
	}
	ticks, err := StartTicks(pids[0])
	if err != nil {
		return nil, err
	}
	m := &ProcessMonitor{Pid: pids[0], StartTicks: ticks, podUID: pod.UID, restarts: Restarts(pod)}
	if d, err := f.FindMultusDaemon(); err == nil {
		m.multusPID = d.Pid
	} else {
		t.Logf("Multus daemon CPU not measured: %v", err)
	}
	t.Logf("measuring netplug-controller pid %d (pod %s)", m.Pid, pod.Name)
	return m, nil
}

func (m *ProcessMonitor) Sample() (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	ticks, err := StartTicks(m.Pid)
	if err != nil || ticks != m.StartTicks {
		return s, fmt.Errorf("netplug-controller pid %d is gone: it restarted or crashed", m.Pid)
	}
	if s.CpuTicks, err = cpuTicks(m.Pid); err != nil {
		return s, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.Pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest) // "12345 kB"
		if len(fields) == 0 {
			continue
		}
		v, _ := strconv.ParseUint(fields[0], 10, 64)
		switch key {
		case "VmRSS":
			s.RssKiB = v
		case "VmHWM":
			s.HwmKiB = v
		case "RssAnon":
			s.AnonKiB = v
		}
	}
	if m.multusPID > 0 {
		s.MultusTicks, _ = cpuTicks(m.multusPID)
	}
	s.HostBusy, s.Total = hostCPU()
	return s, nil
}

// cpuTicks is utime + stime of the process (fields 14 and 15 of /proc/PID/stat).
func cpuTicks(pid int) (uint64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(stat[i+1:])) // fields[0] is field 3, the state
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseUint(fields[11], 10, 64)
	stime, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return utime + stime, nil
}

// hostCPU returns the busy and total ticks of all CPUs from /proc/stat (0, 0 if unreadable).
func hostCPU() (busy, total uint64) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0
	}
	// user nice system idle iowait irq softirq steal; guest time is already counted in user.
	for i, f := range fields[1:min(len(fields), 9)] {
		v, _ := strconv.ParseUint(f, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// PromSnapshot maps "name{labels}" to the value of every sample of one /metrics scrape; nil when
// netplug's /metrics could not be read (the figures are then left out, nothing fails).
type PromSnapshot map[string]float64

func ScrapeMetrics() PromSnapshot {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, netplugMetricsURL, nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	snap := PromSnapshot{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			snap[line[:i]] = v
		}
	}
	return snap
}

// Sum adds the samples of metric name whose labels include every one of labels (`k="v"`).
func (p PromSnapshot) Sum(name string, labels ...string) float64 {
	var total float64
	for series, v := range p {
		n, lbls, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		matches := true
		for _, l := range labels {
			matches = matches && strings.Contains(lbls, l)
		}
		if matches {
			total += v
		}
	}
	return total
}

func (p PromSnapshot) Delta(after PromSnapshot) *report.MetricsDelta {
	if p == nil || after == nil {
		return nil
	}
	diff := func(name string, labels ...string) float64 {
		return after.Sum(name, labels...) - p.Sum(name, labels...)
	}
	avg := func(histogram string, labels ...string) (int, float64) {
		n := diff(histogram+"_count", labels...)
		if n <= 0 {
			return 0, 0
		}
		return int(n), report.Round2(1000 * diff(histogram+"_sum", labels...) / n)
	}
	m := &report.MetricsDelta{}
	m.Adds, m.AddAvgMs = avg("netplug_plug_duration_seconds", `operation="add"`)
	m.Dels, m.DelAvgMs = avg("netplug_plug_duration_seconds", `operation="del"`)
	m.Reconciles, m.ReconcileAvgMs = avg("netplug_reconcile_duration_seconds")
	_, m.QueueWaitAvgMs = avg("netplug_workqueue_queue_duration_seconds", `name="pods"`)
	m.Failures = int(diff("netplug_failures_total"))
	return m
}

const (
	// ClockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat.
	ClockTicks = 100
	// netplugMetricsURL is netplug's /metrics: the local overlay runs it on the host network.
	netplugMetricsURL = "http://127.0.0.1:9090/metrics"
)
