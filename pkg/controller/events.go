package controller

import (
	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/executor"
)

// Event reasons on the pod: the one list (the README lists every one). Warnings double as the
// reason label of netplug_failures_total.
const (
	ReasonPlugged   = "NetworkPlugged"
	ReasonUnplugged = "NetworkUnplugged"
	ReasonReplugged = "NetworkReplugged"
	ReasonReleased  = "NetworkReleased"

	ReasonInvalidSelection  = "InvalidNetworkSelection"
	ReasonTooManyNetworks   = "TooManyNetworks"
	ReasonInvalidStatus     = "InvalidNetworkStatus"
	ReasonHostNetwork       = "HostNetworkPod"
	ReasonNetworkNotFound   = "NetworkNotFound"
	ReasonInvalidNetwork    = "InvalidNetworkConfig"
	ReasonIsolation         = "NamespaceIsolationViolation"
	ReasonPlugFailed        = "PlugFailed"
	ReasonUnplugFailed      = "UnplugFailed"
	ReasonSandboxLookup     = "SandboxLookupFailed"
	ReasonStatusWriteFailed = "StatusWriteFailed"
	ReasonCheckpointFailed  = "CheckpointFailed"
	// ReasonCheckpointQuarantined: a record that could not be read was set aside; what it
	// described (if anything) may need a manual release.
	ReasonCheckpointQuarantined = "CheckpointQuarantined"
	ReasonOrphanUnplugFailed    = "OrphanUnplugFailed"
	// ReasonReleaseDeadline: the finalizer was removed without a full release, after
	// finalizerTimeout; the node-local records stay for a later clean-up.
	ReasonReleaseDeadline = "ReleaseDeadlineExceeded"
	// ReasonBudgetExceeded: the reconcile's time budget ran out before every step started.
	ReasonBudgetExceeded = "ReconcileBudgetExceeded"

	// Device-pool NICs moved into and out of pods.
	ReasonDeviceMovedIn  = "DeviceMovedIn"
	ReasonDeviceMovedOut = "DeviceMovedOut"
	// ReasonHostRestoreFailed: a NIC came back to the host without its addresses or MTU.
	ReasonHostRestoreFailed = "HostRestoreFailed"
	// ReasonDeviceLookup: PodResources could not say which NICs the pod holds.
	ReasonDeviceLookup = "DeviceLookupFailed"
	// Hot-plug of a pool device into a running pod (a NAD whose resourceName is a pool).
	ReasonPoolExhausted     = "PoolExhausted"
	ReasonDeviceUnavailable = "DeviceUnavailable"
	ReasonDeviceReturned    = "DeviceReturned"

	// Element problems found by the parser and the planner (pkg/attachment).
	ReasonInvalidNetworkRef  = attachment.ReasonInvalidNetworkRef
	ReasonInvalidInterface   = attachment.ReasonInvalidInterface
	ReasonInvalidAttributes  = attachment.ReasonInvalidAttributes
	ReasonDuplicateInterface = attachment.ReasonDuplicateInterface
	ReasonUnsupportedField   = attachment.ReasonUnsupportedField
	ReasonInterfaceInUse     = attachment.ReasonInterfaceInUse
)

// reasonFor names the Warning of a failed step: a name Multus refused is the same mistake as one
// the planner refuses.
func reasonFor(f *executor.Failure) string {
	switch {
	case f.Kind == executor.KindNameExists:
		return ReasonInterfaceInUse
	case f.Kind == executor.KindCheckpoint:
		return ReasonCheckpointFailed
	case f.Op == executor.OpDel:
		return ReasonUnplugFailed
	case f.Op == executor.OpRelease:
		return ReasonOrphanUnplugFailed
	}
	return ReasonPlugFailed
}
