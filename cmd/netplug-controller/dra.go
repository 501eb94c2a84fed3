package main

import (
	"context"

	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/dra"
	"github.com/netplug/netplug/pkg/executor"
)

// draDevices gives the DRA hook what device claims and its Warning events need: the node's
// device pools (their NICs go into the node's ResourceSlice, and claims allocated one get it
// moved in) with the executor that restores a returning NIC's host addresses, and the event
// recorder (ClaimPlugFailed on a pod whose sandbox failed). pools is nil without devicePools.
// The pool NICs of claims prepared before a restart are reserved again here, before the
// controller starts and could hot-plug one of them.
func draDevices(ctx context.Context, hook *dra.Hook, pools *devices.Source, exec *executor.Executor, recorder record.EventRecorder) {
	hook.Events = dra.RecorderEvents{Recorder: recorder}
	if pools == nil {
		return
	}
	hook.Pools = pools
	hook.Exec = exec // WithHostLinks: a NIC's host addresses and MTU come back with it
	if n, err := hook.RestoreReservations(); err != nil {
		// dra.Run tries again, and fails the DRA driver (its readiness check) if it still cannot.
		klog.FromContext(ctx).Error(err, "Reserving the pool NICs of prepared claims")
	} else if n > 0 {
		klog.FromContext(ctx).Info("Pool NICs of prepared claims reserved again", "devices", n)
	}
}
