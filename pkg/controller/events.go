package controller

// Event reasons on the pod. Warnings double as the reason label of netplug_failures_total.
const (
	ReasonPlugged   = "NetworkPlugged"
	ReasonUnplugged = "NetworkUnplugged"
	ReasonReplugged = "NetworkReplugged"

	ReasonInvalidSelection   = "InvalidNetworkSelection"
	ReasonInvalidStatus      = "InvalidNetworkStatus"
	ReasonHostNetwork        = "HostNetworkPod"
	ReasonNetworkNotFound    = "NetworkNotFound"
	ReasonInvalidNetwork     = "InvalidNetworkConfig"
	ReasonIsolation          = "NamespaceIsolationViolation"
	ReasonPlugFailed         = "PlugFailed"
	ReasonUnplugFailed       = "UnplugFailed"
	ReasonSandboxLookup      = "SandboxLookupFailed"
	ReasonStatusWriteFailed  = "StatusWriteFailed"
	ReasonCheckpointFailed   = "CheckpointFailed"
	ReasonOrphanUnplugFailed = "OrphanUnplugFailed"
)
