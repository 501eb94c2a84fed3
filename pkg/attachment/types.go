package attachment

import (
	"bytes"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
)

// Attachment is one secondary interface of a pod, identified by Key().
type Attachment struct {
	// Namespace and Network name the NetworkAttachmentDefinition.
	Namespace string
	Network   string
	// Interface is the interface name inside the pod.
	Interface string
	// Attributes are what the user asked for on this interface.
	Attributes Attributes
	// Index is the element's position in the selection annotation (desired only; -1 otherwise).
	Index int
	// AttributesKnown is false for a current attachment whose requested attributes are unknown
	// (attached by Multus at pod creation): only the observed IPs and MAC can be compared.
	AttributesKnown bool
	// ObservedIPs and ObservedMAC come from network-status (current only).
	ObservedIPs []string
	ObservedMAC string
	// Confirmed is false for an attachment netplug recorded before an ADD whose result never
	// reached network-status (e.g. the controller died in between): it may or may not exist.
	Confirmed bool
	// Uncertain is true for an attachment whose last ADD or DEL was started and never
	// confirmed (it failed, or the controller or Multus died during it): the link may be gone,
	// half gone, or another than the one network-status describes, so keeping it means a replug.
	Uncertain bool
	// Managed is true for a current attachment netplug holds a record of: one it plugged, or
	// one Multus attached at pod creation for a selection element netplug saw (adopted). Only
	// managed attachments are ever removed; the others belong to Multus defaultNetworks, to
	// DRA claims or to other writers.
	Managed bool
	// ClaimBacked is true for a current attachment a DRA ResourceClaim holds (its record has
	// Origin "claim"): it is never Managed by the annotation path, never removed, adopted or
	// replugged by it, and a selection element that names its interface is refused.
	ClaimBacked bool
	// FromCreation is true for an unmanaged attachment whose network the pod's selection listed
	// when Multus set the pod up (Selection.AtCreation): it may be removed like a managed one.
	FromCreation bool
	// Source says which source of desired state asked for the attachment (desired only).
	Source Source
}

// Source names a source of desired state, for events, status and ownership.
type Source string

// The sources of desired state.
const (
	// SourceAnnotation is the pod's k8s.v1.cni.cncf.io/networks annotation.
	SourceAnnotation Source = "annotation"
	// SourceDevice is a NIC of a netplug device pool that the kubelet allocated to the pod
	// (PodResources). It is never removed while the pod runs: only the pod's end releases it.
	SourceDevice Source = "device"
	// SourceClaim is a DRA ResourceClaim prepared for the pod (plugged by the NRI hook).
	SourceClaim Source = "claim"
)

// Attributes are the per-interface requests of a selection element that change what the CNI
// plugin does; a change to any of them is a replug.
type Attributes struct {
	IPs     []string               `json:"ips,omitempty"`
	MAC     string                 `json:"mac,omitempty"`
	CNIArgs map[string]interface{} `json:"cni-args,omitempty"`
}

// NetworkName is the "namespace/name" form Multus uses in network-status.
func (a Attachment) NetworkName() string { return a.Namespace + "/" + a.Network }

// Key is the identity of an attachment: namespace/network/interface.
func (a Attachment) Key() string { return a.NetworkName() + "/" + a.Interface }

func (a Attachment) String() string {
	if a.Interface == "" {
		return a.NetworkName()
	}
	return a.NetworkName() + "@" + a.Interface
}

// Equal reports whether two attribute sets request the same thing. IP order does not matter,
// MAC case does not matter, and an empty map equals a nil one.
func (x Attributes) Equal(y Attributes) bool {
	if !SameMAC(x.MAC, y.MAC) {
		return false
	}
	a, b := slices.Clone(x.IPs), slices.Clone(y.IPs)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		return false
	}
	if len(x.CNIArgs) == 0 && len(y.CNIArgs) == 0 {
		return true
	}
	return reflect.DeepEqual(x.CNIArgs, y.CNIArgs)
}

// SameMAC compares two hardware addresses as addresses: 02-00-00-00-00-05, 02:00:00:00:00:05
// and 0200.0000.0005 are one MAC. Two empty strings are equal; text that does not parse is
// compared as text, case-insensitively.
func SameMAC(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	ma, errA := net.ParseMAC(a)
	mb, errB := net.ParseMAC(b)
	if errA != nil || errB != nil {
		return strings.EqualFold(a, b)
	}
	return bytes.Equal(ma, mb)
}

// Problem is one selection element that cannot be acted on. It fails that element only.
type Problem struct {
	Index   int    // position in the annotation
	Element string // the element as the user wrote it, for messages
	Reason  string // short machine-friendly reason, e.g. "InvalidInterfaceName"
	Message string
}

func (p Problem) Error() string {
	return fmt.Sprintf("network selection element %d (%s): %s", p.Index, p.Element, p.Message)
}
