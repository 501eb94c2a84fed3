package attachment

import (
	"fmt"
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
}

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
	if !strings.EqualFold(x.MAC, y.MAC) {
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
