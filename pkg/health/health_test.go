package health

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/netplug/netplug/pkg/apitest"
)

func get(t *testing.T, srv *http.Server, path string) (int, string) {
	t.Helper()
	return apitest.Get(t, srv.Handler, path)
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
