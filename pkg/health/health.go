// Package health serves netplug's probes: /healthz (liveness: only what a container restart
// fixes, such as a stale socket-directory mount) and /readyz (readiness).
package health

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Check is one readiness condition, such as "the CRI runtime answers".
type Check func(ctx context.Context) error

// checkTimeout bounds each readiness check, so a hung dependency fails the probe instead of
// hanging it past kubelet's own probe timeout. A variable only so tests can shorten it.
var checkTimeout = 2 * time.Second

// readHeaderTimeout guards the probe server against slow clients.
const readHeaderTimeout = 5 * time.Second

// NewHealthServer returns a server (not yet listening) on addr with
//   - /healthz: the live checks (liveness): only conditions a container restart fixes;
//   - /readyz: the ready checks (readiness).
//
// Each endpoint runs its checks concurrently, each within 2 s, and answers 200 "ok" when all
// pass, else 503 listing each failing check's name and error.
func NewHealthServer(addr string, live, ready map[string]Check) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/healthz", checksHandler(live))
	mux.Handle("/readyz", checksHandler(ready))
	return &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
}

func checksHandler(checks map[string]Check) http.Handler {
	names := make([]string, 0, len(checks))
	for name := range checks {
		names = append(names, name)
	}
	sort.Strings(names)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		errs := make([]error, len(names))
		var wg sync.WaitGroup
		for i, name := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = runCheck(r.Context(), checks[name])
			}()
		}
		wg.Wait()

		var failed strings.Builder
		for i, err := range errs {
			if err != nil {
				fmt.Fprintf(&failed, "%s: %v\n", names[i], err)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if failed.Len() > 0 {
			klog.FromContext(r.Context()).V(2).Info("Check failed", "path", r.URL.Path, "failing", strings.TrimSpace(failed.String()))
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprint(w, failed.String())
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
}

// runCheck runs check within checkTimeout and gives up waiting at the deadline even if the check
// ignores its context.
func runCheck(ctx context.Context, check Check) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- check(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within %s: %w", checkTimeout, ctx.Err())
	}
}
