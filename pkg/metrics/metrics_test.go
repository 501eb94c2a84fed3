package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netplug/netplug/pkg/apitest"

	"k8s.io/client-go/util/workqueue"
)

func get(t *testing.T, srv *http.Server, path string) (int, string) {
	t.Helper()
	return apitest.Get(t, srv.Handler, path)
}

func TestMetricsExposition(t *testing.T) {
	RegisterWorkqueueProvider()
	RegisterWorkqueueProvider() // a second call must be harmless

	// Names unique per run: the registry is process-wide and -count=N reruns the test.
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	queue, reason := "metrics_test_"+run, "test_"+run

	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		// An hour's back-off keeps the retried item out of the queue while the test looks.
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Hour, time.Hour),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: queue})
	defer q.ShutDown()
	q.Add("ns/a")
	q.Add("ns/b")
	item, _ := q.Get()
	q.AddRateLimited(item)
	q.Done(item)

	ReconcileDuration.WithLabelValues(ResultSuccess).Observe(0.02)
	PlugDuration.WithLabelValues(OperationAdd, ResultError).Observe(1.5)
	Failures.WithLabelValues(reason).Inc()
	Attachments.Set(3)

	code, body := get(t, NewMetricsServer(":0"), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics status %d", code)
	}
	for _, want := range []string{
		// Histograms of fixed label values accumulate across runs: check they are exposed.
		`netplug_reconcile_duration_seconds_bucket{result="success",le="0.032"} `,
		`netplug_plug_duration_seconds_count{operation="add",result="error"} `,
		`netplug_failures_total{reason="` + reason + `"} 1`,
		"netplug_attachments 3",
		`netplug_workqueue_depth{name="` + queue + `"} 1`,
		`netplug_workqueue_adds_total{name="` + queue + `"} 2`,
		`netplug_workqueue_retries_total{name="` + queue + `"} 1`,
		`netplug_workqueue_queue_duration_seconds_count{name="` + queue + `"} 1`,
		`netplug_workqueue_work_duration_seconds_count{name="` + queue + `"} 1`,
		`netplug_workqueue_unfinished_work_seconds{name="` + queue + `"}`,
		`netplug_workqueue_longest_running_processor_seconds{name="` + queue + `"}`,
		"go_goroutines",
		"process_start_time_seconds",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestBucketsSpanMillisecondsToAMinute(t *testing.T) {
	if first := durationBuckets[0]; first > 0.001 {
		t.Errorf("first bucket %g s, want <= 1 ms", first)
	}
	if last := durationBuckets[len(durationBuckets)-1]; last < 60 {
		t.Errorf("last bucket %g s, want >= 60 s", last)
	}
}
