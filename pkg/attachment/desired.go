package attachment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
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
	// AtCreation are the networks ("namespace/name") the pod's selection listed before Multus
	// set its sandbox up, as netplug saw them: Multus attached those at pod creation because
	// the pod asked for them, so they are the pod's to remove, like what netplug plugged.
	AtCreation map[string]bool
}

// DefaultMaxElements is the default cap on elements in one pod's selection.
const DefaultMaxElements = 32

// ParseSelection parses the value of k8s.v1.cni.cncf.io/networks with the default cap on
// elements; see ParseSelectionWithin.
func ParseSelection(annotation, podNamespace string) (Selection, error) {
	return ParseSelectionWithin(annotation, podNamespace, DefaultMaxElements)
}

// ParseSelectionWithin parses the value of k8s.v1.cni.cncf.io/networks, in the JSON list form or
// the comma form "ns/net@if". An error means the annotation as a whole is unusable and the caller
// must change nothing: it is malformed, or has more than maxElements elements. Element-level
// mistakes, such as a field hot-plug cannot honour, come back as Problems instead.
func ParseSelectionWithin(annotation, podNamespace string, maxElements int) (Selection, error) {
	if strings.TrimSpace(annotation) == "" {
		return Selection{}, nil
	}
	raw, err := rawElements(annotation)
	if err != nil {
		return Selection{}, err
	}
	count := len(raw)
	if raw == nil {
		count = strings.Count(annotation, ",") + 1 // comma form; counted before the costly parse
	}
	if count > maxElements {
		return Selection{}, fmt.Errorf("%w: %d elements, at most %d are allowed per pod", ErrTooManyElements, count, maxElements)
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
			Source:    SourceAnnotation,
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
		if i < len(raw) {
			if err := supportedFields(raw[i]); err != nil {
				sel.Problems = append(sel.Problems, Problem{Index: i, Element: a.String(), Reason: ReasonUnsupportedField, Message: err.Error()})
				continue
			}
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

// ErrTooManyElements is the error of a selection over the per-pod cap.
var ErrTooManyElements = errors.New("too many network selection elements")

// rawElements returns the elements of a JSON-list annotation as raw objects, or nil for the comma
// form. It catches `[null]`, on which the upstream parser dereferences nil.
func rawElements(annotation string) ([]map[string]json.RawMessage, error) {
	if !strings.ContainsAny(annotation, "[{\"") {
		return nil, nil // comma form
	}
	var list []json.RawMessage
	if json.Unmarshal([]byte(annotation), &list) != nil {
		return nil, nil // not a list: the upstream parser reports it
	}
	out := make([]map[string]json.RawMessage, len(list))
	for i, r := range list {
		if bytes.Equal(bytes.TrimSpace(r), []byte("null")) {
			return nil, fmt.Errorf("malformed network selection annotation: element %d is null", i)
		}
		if json.Unmarshal(r, &out[i]) != nil {
			return nil, nil // not an object: the upstream parser reports it
		}
	}
	return out, nil
}

// SupportedFields are the network-selection fields hot-plug carries out. Multus's /delegate API
// takes only ips, mac and cni-args with an interface; anything else would be silently dropped.
var SupportedFields = []string{"name", "namespace", "interface", "ips", "mac", "cni-args"}

// unsupportedFields are fields of Multus's selection element that hot-plug cannot honour, with
// why, so that the event says what to do instead.
var unsupportedFields = map[string]string{
	"default-route":        "the /delegate API cannot set the pod's default route",
	"portMappings":         "the /delegate API carries no port mappings",
	"bandwidth":            "the /delegate API carries no bandwidth limits",
	"infiniband-guid":      "the /delegate API carries no InfiniBand GUID",
	"ipam-claim-reference": "the /delegate API carries no IPAM claim",
	"deviceID":             "the /delegate API carries no device ID; use a NAD with a netplug device pool",
}

// supportedFields refuses an element with a field hot-plug would not carry out.
func supportedFields(element map[string]json.RawMessage) error {
	names := make([]string, 0, len(element))
	for name := range element {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if slices.Contains(SupportedFields, name) {
			continue
		}
		if why, known := unsupportedFields[name]; known {
			return fmt.Errorf("field %q is not supported by hot-plug: %s", name, why)
		}
		return fmt.Errorf("unknown field %q (hot-plug supports %s)", name, strings.Join(SupportedFields, ", "))
	}
	return nil
}

// Reasons for Problems, used in events and metrics.
const (
	ReasonInvalidNetworkRef  = "InvalidNetworkReference"
	ReasonInvalidInterface   = "InvalidInterfaceName"
	ReasonInvalidAttributes  = "InvalidAttributes"
	ReasonDuplicateInterface = "DuplicateInterface"
	ReasonUnsupportedField   = "UnsupportedSelectionField"
	// ReasonInterfaceInUse refuses an element whose interface name the pod already has from
	// its default network or from an attachment netplug does not own.
	ReasonInterfaceInUse = "InterfaceNameInUse"
)

func validateElement(a Attachment) (string, error) {
	if err := validateNetworkRef(a.Namespace, a.Network); err != nil {
		return ReasonInvalidNetworkRef, err
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
