package attachment

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strings"

	nadutils "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/utils"
)

// Selection is a parsed network-selection annotation.
type Selection struct {
	// Attachments are the valid elements in annotation order. Interface is "" where the user
	// named none; AssignInterfaces fills it.
	Attachments []Attachment
	// Problems are elements that cannot be acted on. While there are any, nothing is removed:
	// a typo must never unplug a working interface.
	Problems []Problem
}

// ParseSelection parses the value of k8s.v1.cni.cncf.io/networks, in the JSON list form or the
// comma form "ns/net@if". An error means the annotation as a whole is unusable and the caller
// must change nothing. Element-level mistakes come back as Problems instead.
func ParseSelection(annotation, podNamespace string) (Selection, error) {
	if strings.TrimSpace(annotation) == "" {
		return Selection{}, nil
	}
	if err := rejectNullElements(annotation); err != nil {
		return Selection{}, err
	}
	elements, err := nadutils.ParseNetworkAnnotation(annotation, podNamespace)
	if err != nil {
		return Selection{}, fmt.Errorf("malformed network selection annotation: %w", err)
	}
	var sel Selection
	claimed := map[string]int{} // interface name -> index of the first element that asked for it
	for i, el := range elements {
		a := Attachment{
			Namespace: el.Namespace,
			Network:   el.Name,
			Interface: el.InterfaceRequest,
			Index:     i,
			Attributes: Attributes{
				IPs: el.IPRequest,
				MAC: el.MacRequest,
			},
			AttributesKnown: true,
			Confirmed:       true,
		}
		if el.CNIArgs != nil {
			a.Attributes.CNIArgs = *el.CNIArgs
		}
		if reason, err := validateElement(a); err != nil {
			sel.Problems = append(sel.Problems, Problem{Index: i, Element: a.String(), Reason: reason, Message: err.Error()})
			continue
		}
		if a.Interface != "" {
			if first, dup := claimed[a.Interface]; dup {
				sel.Problems = append(sel.Problems, Problem{Index: i, Element: a.String(), Reason: ReasonDuplicateInterface,
					Message: fmt.Sprintf("interface %q is already requested by element %d", a.Interface, first)})
				continue
			}
			claimed[a.Interface] = i
		}
		sel.Attachments = append(sel.Attachments, a)
	}
	return sel, nil
}

// rejectNullElements catches `[null]`, on which the upstream parser dereferences nil.
func rejectNullElements(annotation string) error {
	if !strings.ContainsAny(annotation, "[{\"") {
		return nil // comma form
	}
	var raw []json.RawMessage
	if json.Unmarshal([]byte(annotation), &raw) != nil {
		return nil // not a list: the upstream parser reports it
	}
	for i, r := range raw {
		if bytes.Equal(bytes.TrimSpace(r), []byte("null")) {
			return fmt.Errorf("malformed network selection annotation: element %d is null", i)
		}
	}
	return nil
}

// Reasons for Problems, used in events and metrics.
const (
	ReasonInvalidNetwork     = "InvalidNetwork"
	ReasonInvalidInterface   = "InvalidInterfaceName"
	ReasonInvalidAttributes  = "InvalidAttributes"
	ReasonDuplicateInterface = "DuplicateInterface"
)

func validateElement(a Attachment) (string, error) {
	if err := validateNetworkRef(a.Namespace, a.Network); err != nil {
		return ReasonInvalidNetwork, err
	}
	if a.Interface != "" {
		if err := ValidateInterfaceName(a.Interface); err != nil {
			return ReasonInvalidInterface, err
		}
	}
	for _, ip := range a.Attributes.IPs {
		if net.ParseIP(ip) == nil {
			if _, _, err := net.ParseCIDR(ip); err != nil {
				return ReasonInvalidAttributes, fmt.Errorf("requested IP %q is neither an address nor a CIDR", ip)
			}
		}
	}
	if a.Attributes.MAC != "" {
		if _, err := net.ParseMAC(a.Attributes.MAC); err != nil {
			return ReasonInvalidAttributes, fmt.Errorf("requested MAC %q is invalid", a.Attributes.MAC)
		}
	}
	return "", nil
}
