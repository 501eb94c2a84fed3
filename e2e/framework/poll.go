//go:build e2e

package framework

import (
	"context"
	"math"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Condition is what Poll waits for: done, or why not yet.
type Condition func(ctx context.Context) (done bool, why string)

// Poll is the one poller of the e2e tests: it calls cond at once and then every interval until
// cond is done, timeout has passed (0: no timeout of its own) or ctx is done. Every call of cond
// gets a context bounded by ApiTimeout as well. It returns nil once cond is done, else the
// context's error and the last reason cond gave.
func Poll(ctx context.Context, interval, timeout time.Duration, cond Condition) (why string, err error) {
	if timeout <= 0 {
		timeout = math.MaxInt64 // ctx alone bounds the wait
	}
	err = wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		callCtx, cancel := context.WithTimeout(ctx, ApiTimeout)
		defer cancel()
		done, reason := cond(callCtx)
		// A call cut short by the overall deadline says only that: keep the reason before it.
		if ctx.Err() == nil || why == "" {
			why = reason
		}
		return done, nil
	})
	if err != nil {
		return why, err
	}
	return "", nil
}

// WaitUntil polls cond every PollInterval until it reports true; after timeout the test fails
// with what and the last reason cond gave for not being done.
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond Condition) {
	t.Helper()
	if why, err := Poll(context.Background(), PollInterval, timeout, cond); err != nil {
		t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
	}
}
