package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/executor"
	"github.com/netplug/netplug/pkg/podwriter"
)

// budgetRetry is how soon a reconcile that ran out of budget continues.
const budgetRetry = time.Second

// commit writes the run's outcome once: its network-status changes and, once netplug holds no
// hot-plugged interface on the pod, the finalizer's removal, in one patch. Then the records are
// settled and the events and metrics go out.
func (c *Controller) commit(ctx context.Context, obs *observation, r *run) error {
	pod := obs.pod
	held := heldRecords(append(obs.current, obs.stale...), r.outcomes)
	for _, d := range groupDone(r.done) {
		c.event(pod, corev1.EventTypeNormal, d.reason, "%s", d.message)
	}
	u := podwriter.Update{Changes: r.changes, ReleaseFinalizer: !holdsHotplug(held)}
	if !u.Empty(pod) {
		written, err := c.writer.Apply(ctx, pod, u)
		if err != nil {
			// The records stay in flight: the retry treats their interfaces as unknown and
			// replugs (or DELs again) what it still wants (or not), then writes it.
			c.warn(pod, ReasonStatusWriteFailed, "%v", err)
			return err
		}
		c.rememberWrite(written)
	}
	if _, err := c.exec.Confirm(r.outcomes); err != nil {
		// The interfaces count as uncertain; the next reconcile redoes them.
		klog.FromContext(ctx).Error(err, "Settling checkpoints")
	} else {
		c.returnDevices(pod, obs.current, r.outcomes, held)
	}
	c.setAttached(pod.UID, len(held))
	if r.skipped > 0 {
		c.warn(pod, ReasonBudgetExceeded, "%d steps were not started within the reconcile budget of %s; they continue shortly", r.skipped, c.opts.ReconcileBudget)
		return requeueError{reason: "reconcile budget exhausted", after: budgetRetry}
	}
	if len(r.failed) > 0 {
		return fmt.Errorf("%d steps failed: %s", len(r.failed), strings.Join(r.failed, "; "))
	}
	return nil
}

// maxEventItems bounds how many steps one event names.
const maxEventItems = 16

// groupDone folds the run's Normal events into one per reason, in the order of their first step
// ("plugged ns/a as net1; plugged ns/b as net2"): a pod's reconcile costs one event write per kind
// of change, not one per interface, and a burst leaves the API server that much more time.
func groupDone(done []doneEvent) []doneEvent {
	var out []doneEvent
	index := map[string]int{}
	count := map[string]int{}
	for _, d := range done {
		i, ok := index[d.reason]
		if !ok {
			index[d.reason] = len(out)
			out = append(out, d)
			count[d.reason] = 1
			continue
		}
		if count[d.reason]++; count[d.reason] <= maxEventItems {
			out[i].message += "; " + d.message
		}
	}
	for i, d := range out {
		if n := count[d.reason]; n > maxEventItems {
			out[i].message += fmt.Sprintf("; and %d more", n-maxEventItems)
		}
	}
	return out
}

// heldRecords is the set of records once the outcomes are settled (the store keeps one record
// per interface name): a successful DEL's record goes with the status write that drops its
// interface, and a removed record (a release, an ADD that created nothing) is gone.
func heldRecords(before []checkpoint.Entry, outcomes []executor.Outcome) []checkpoint.Entry {
	held := map[string]checkpoint.Entry{}
	for _, e := range before {
		held[e.Interface] = e
	}
	for _, o := range outcomes {
		if (o.Op == executor.OpDel && o.OK()) || o.Record.Interface == "" {
			delete(held, o.Interface)
			continue
		}
		held[o.Interface] = o.Record
	}
	out := make([]checkpoint.Entry, 0, len(held))
	for _, e := range held {
		out = append(out, e)
	}
	return out
}

// holdsHotplug reports whether any record is of an interface netplug plugged (not one it
// adopted from Multus): only those need the pod object, and so the finalizer, to be released.
func holdsHotplug(entries []checkpoint.Entry) bool {
	for _, e := range entries {
		if !e.Adopted {
			return true
		}
	}
	return false
}
