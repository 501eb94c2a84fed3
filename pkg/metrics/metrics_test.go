package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/workqueue"
)

func get(t *testing.T, srv *http.Server, path string) (int, string) {
	t.Helper()
	ts := httptest.NewServer(srv.Handler)
	defer ts.Close()
	resp, err := http.Get(ts.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestHealthz(t *testing.T) {
	failing := map[string]Check{"cri": func(context.Context) error { return errors.New("down") }}
	// Liveness does not depend on readiness checks.
	code, body := get(t, NewHealthServer(":0", nil, failing), "/healthz")
	if code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	// A failing live check fails liveness and names itself.
	stale := map[string]Check{"multus-mount": func(context.Context) error { return errors.New("deleted") }}
	code, body = get(t, NewHealthServer(":0", stale, nil), "/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "multus-mount: deleted") {
		t.Errorf("/healthz = %d %q, want 503 naming multus-mount", code, body)
	}
}

func TestReadyz(t *testing.T) {
	ok := func(context.Context) error { return nil }
	tests := []struct {
		name     string
		checks   map[string]Check
		wantCode int
		want     []string // fragments the body must contain
		notWant  []string // fragments it must not
	}{
		{name: "no checks", checks: nil, wantCode: http.StatusOK, want: []string{"ok"}},
		{
			name:     "all pass",
			checks:   map[string]Check{"cri": ok, "multus": ok},
			wantCode: http.StatusOK,
			want:     []string{"ok"},
		},
		{
			name: "one fails",
			checks: map[string]Check{
				"cri":    ok,
				"multus": func(context.Context) error { return errors.New("dial unix /run/multus/multus.sock: no such file") },
			},
			wantCode: http.StatusServiceUnavailable,
			want:     []string{"multus: dial unix /run/multus/multus.sock: no such file"},
			notWant:  []string{"cri"},
		},
		{
			name: "two fail, listed in name order",
			checks: map[string]Check{
				"zeta":  func(context.Context) error { return errors.New("z") },
				"alpha": func(context.Context) error { return errors.New("a") },
			},
			wantCode: http.StatusServiceUnavailable,
			want:     []string{"alpha: a\nzeta: z\n"},
		},
		{
			name: "check honouring its deadline",
			checks: map[string]Check{"slow": func(ctx context.Context) error {
				<-ctx.Done()
				return ctx.Err()
			}},
			wantCode: http.StatusServiceUnavailable,
			want:     []string{"slow: ", "deadline"},
		},
		{
			name: "check ignoring its deadline",
			checks: map[string]Check{"stuck": func(context.Context) error {
				time.Sleep(2 * time.Second)
				return nil
			}},
			wantCode: http.StatusServiceUnavailable,
			want:     []string{"stuck: no answer within"},
		},
	}
	old := checkTimeout
	checkTimeout = 100 * time.Millisecond
	defer func() { checkTimeout = old }()

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, body := get(t, NewHealthServer(":0", nil, tt.checks), "/readyz")
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("/readyz took %s with a %s check timeout", elapsed, checkTimeout)
			}
			if code != tt.wantCode {
				t.Errorf("/readyz status %d, want %d (body %q)", code, tt.wantCode, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("/readyz body %q does not contain %q", body, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("/readyz body %q contains %q", body, w)
				}
			}
		})
	}
}

func TestChecksGetADeadline(t *testing.T) {
	type seen struct {
		deadline time.Time
		set      bool
	}
	seenCh := make(chan seen, 1)
	check := func(ctx context.Context) error {
		d, ok := ctx.Deadline()
		seenCh <- seen{d, ok}
		return nil
	}
	start := time.Now()
	if code, _ := get(t, NewHealthServer(":0", nil, map[string]Check{"c": check}), "/readyz"); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	got := <-seenCh
	deadline, hasDeadline := got.deadline, got.set
	if !hasDeadline || deadline.Sub(start) > checkTimeout+time.Second {
		t.Errorf("check context deadline %v (set: %v), want within %s", deadline, hasDeadline, checkTimeout)
	}
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
