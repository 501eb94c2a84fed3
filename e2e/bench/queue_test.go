//go:build e2e

package bench

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/netplug/netplug/e2e/framework"
)

// netplug's work queues and counters, read from its /metrics (pkg/metrics).
const (
	// benchMetricsPoll is how often /metrics is scraped while waiting on netplug's queues (each
	// scrape costs netplug a little CPU, visible in the phase's figures).
	benchMetricsPoll = 20 * time.Millisecond
	// benchReadyzURL is netplug's own readiness endpoint (--health-probe-bind-address=:9091, on
	// the host network in the local overlay), polled directly: the kubelet probes it every 5 s.
	benchReadyzURL = "http://127.0.0.1:9091/readyz"

	metricReconciles   = "netplug_reconcile_duration_seconds"
	metricPlugs        = "netplug_plug_duration_seconds"
	metricFailures     = "netplug_failures_total"
	metricQueueDepth   = "netplug_workqueue_depth"
	metricQueueAdds    = "netplug_workqueue_adds_total"
	metricQueueWork    = "netplug_workqueue_work_duration_seconds_count"
	metricProcessStart = "process_start_time_seconds"
	podsQueue          = `name="pods"`
)

// netplugQueues are the controller's work queues: pods to plug, and pods to release.
var netplugQueues = []string{podsQueue, `name="releases"`}

// queuesIdle reports whether nothing is queued or in flight in netplug's work queues: every item
// added (adds_total counts each Add of an item not already waiting) was taken and done
// (work_duration is observed at Done). An item waiting out a retry backoff is not yet added.
func queuesIdle(s framework.PromSnapshot) bool {
	for _, q := range netplugQueues {
		if s.Sum(metricQueueDepth, q) != 0 || s.Sum(metricQueueAdds, q) != s.Sum(metricQueueWork, q) {
			return false
		}
	}
	return true
}

// queueWork is how many items netplug's queues have finished.
func queueWork(s framework.PromSnapshot) float64 {
	var n float64
	for _, q := range netplugQueues {
		n += s.Sum(metricQueueWork, q)
	}
	return n
}

// histCount is the _count of histogram name in s, over all its labels.
func histCount(s framework.PromSnapshot, histogram string) int {
	return int(s.Sum(histogram + "_count"))
}

// avgMs is the mean of histogram name between two scrapes, in ms (0 without observations).
func avgMs(before, after framework.PromSnapshot, histogram string) float64 {
	n := after.Sum(histogram+"_count") - before.Sum(histogram+"_count")
	if n <= 0 {
		return 0
	}
	return 1000 * (after.Sum(histogram+"_sum") - before.Sum(histogram+"_sum")) / n
}

// pollMetrics scrapes netplug's /metrics every benchMetricsPoll until done accepts a scrape, and
// returns it with the time it was read.
func pollMetrics(ctx context.Context, what string, done func(framework.PromSnapshot) bool) (framework.PromSnapshot, time.Time, error) {
	tick := time.NewTicker(benchMetricsPoll)
	defer tick.Stop()
	for {
		if s := framework.ScrapeMetrics(); s != nil && done(s) {
			return s, time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return nil, time.Time{}, fmt.Errorf("waiting for %s on netplug's /metrics: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// waitQuiet waits until netplug's queues have been idle, with no item finished, for quiet, and
// returns the last scrape. When /metrics cannot be read it only sleeps quiet and returns nil;
// when the queues do not calm down within timeout it fails the test.
func (b *bench) waitQuiet(t *testing.T, quiet, timeout time.Duration) framework.PromSnapshot {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var (
		since  time.Time // zero: not idle
		last   framework.PromSnapshot
		misses int
	)
	for time.Now().Before(deadline) {
		s := framework.ScrapeMetrics()
		now := time.Now()
		switch {
		case s == nil:
			if misses++; misses >= 5 {
				t.Logf("netplug's /metrics unreadable: waiting %s instead of for idle queues", quiet)
				time.Sleep(quiet)
				return nil
			}
		case !queuesIdle(s):
			since = time.Time{}
		case since.IsZero() || queueWork(s) != queueWork(last):
			since = now
		case now.Sub(since) >= quiet:
			return s
		}
		if s != nil {
			last, misses = s, 0
		}
		time.Sleep(benchMetricsPoll)
	}
	t.Fatalf("netplug's work queues were not idle for %s within %s", quiet, timeout)
	return nil
}

// readyz reports whether netplug answers /readyz with 200 itself.
func readyz(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, benchReadyzURL, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
