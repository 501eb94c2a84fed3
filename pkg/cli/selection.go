package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/netplug/netplug/pkg/attachment"
)

// Form is the form of a network-selection annotation.
type Form string

// The forms of the annotation, as Multus tells them apart.
const (
	FormEmpty Form = "empty"
	FormComma Form = "comma"
	FormJSON  Form = "json"
)

// FormOf tells the annotation's form the way Multus does: any of `[{"` makes it JSON.
func FormOf(annotation string) Form {
	switch {
	case strings.TrimSpace(annotation) == "":
		return FormEmpty
	case strings.ContainsAny(annotation, "[{\""):
		return FormJSON
	default:
		return FormComma
	}
}

// Element is one element of the annotation as the user asked for it. Namespace is "" when the
// user named none (the pod's namespace).
type Element struct {
	Name      string
	Namespace string
	Interface string
	IPs       []string
	MAC       string
	CNIArgs   map[string]any
}

// jsonElement is Element in the JSON form, with Multus's field names, in a fixed order.
type jsonElement struct {
	Name      string         `json:"name"`
	Namespace string         `json:"namespace,omitempty"`
	Interface string         `json:"interface,omitempty"`
	IPs       []string       `json:"ips,omitempty"`
	MAC       string         `json:"mac,omitempty"`
	CNIArgs   map[string]any `json:"cni-args,omitempty"`
}

// commaExpressible reports whether the comma form can say everything e asks for: no
// attributes, and names the comma form's stricter syntax accepts (it refuses, e.g., upper
// case interface names that the JSON form allows).
func (e Element) commaExpressible() bool {
	if len(e.IPs) != 0 || e.MAC != "" || len(e.CNIArgs) != 0 {
		return false
	}
	sel, err := attachment.ParseSelection(e.comma(), "default")
	if err != nil || len(sel.Attachments) != 1 {
		return false
	}
	a := sel.Attachments[0]
	return a.Network == e.Name && a.Interface == e.Interface && (e.Namespace == "" || a.Namespace == e.Namespace)
}

// comma renders e in the comma form: [namespace/]name[@interface].
func (e Element) comma() string {
	s := e.Name
	if e.Namespace != "" {
		s = e.Namespace + "/" + s
	}
	if e.Interface != "" {
		s += "@" + e.Interface
	}
	return s
}

// json renders e as one element of the JSON form.
func (e Element) json() (string, error) {
	raw, err := json.Marshal(jsonElement(e))
	if err != nil {
		return "", fmt.Errorf("encoding the element: %w", err)
	}
	return string(raw), nil
}

// ParseElementArg parses the NETWORK[@IFACE] argument, with [NAMESPACE/] allowed in front, as
// netplug parses one element of the comma form.
func ParseElementArg(arg string) (Element, error) {
	if strings.TrimSpace(arg) == "" {
		return Element{}, usageErr("the network is empty")
	}
	if FormOf(arg) != FormComma || strings.Contains(arg, ",") {
		return Element{}, usageErr("%q is not NETWORK[@IFACE]: give one network, with --ip, --mac and --cni-arg for the rest", arg)
	}
	e, err := parseCommaItem(arg)
	if err != nil {
		return Element{}, usageErr("%q is not [NAMESPACE/]NETWORK[@IFACE]: %v", arg, err)
	}
	return e, nil
}

// parseCommaItem parses one item of the comma form exactly as the Multus parser splits it.
func parseCommaItem(item string) (Element, error) {
	item = strings.TrimSpace(item)
	var e Element
	rest := item
	switch parts := strings.Split(item, "/"); len(parts) {
	case 1:
	case 2:
		e.Namespace, rest = strings.TrimSpace(parts[0]), parts[1]
	default:
		return Element{}, fmt.Errorf("more than one '/'")
	}
	switch parts := strings.Split(rest, "@"); len(parts) {
	case 1:
		e.Name = strings.TrimSpace(parts[0])
	case 2:
		e.Name, e.Interface = strings.TrimSpace(parts[0]), strings.TrimSpace(parts[1])
	default:
		return Element{}, fmt.Errorf("more than one '@'")
	}
	return e, nil
}

// AppendElement returns annotation with e added as its last element, in the annotation's form.
// Other elements are kept byte for byte. An empty annotation takes the comma form when e fits
// it; a comma-form one that cannot express e is converted to the JSON form (converted true).
func AppendElement(annotation string, e Element) (out string, converted bool, err error) {
	switch FormOf(annotation) {
	case FormEmpty:
		if e.commaExpressible() {
			return e.comma(), false, nil
		}
		js, err := e.json()
		if err != nil {
			return "", false, err
		}
		return "[" + js + "]", false, nil
	case FormComma:
		if e.commaExpressible() {
			return appendComma(annotation, e.comma()), false, nil
		}
		out, err := commaToJSON(annotation)
		if err != nil {
			return "", false, err
		}
		out, _, err = AppendElement(out, e)
		return out, true, err
	default:
		js, err := e.json()
		if err != nil {
			return "", false, err
		}
		out, err := appendJSON(annotation, js)
		return out, false, err
	}
}

// RemoveElement returns annotation without its element at index (as ParseSelection counts
// them), in the annotation's form, other elements kept byte for byte. Removing the last
// element gives "".
func RemoveElement(annotation string, index int) (string, error) {
	var out string
	switch FormOf(annotation) {
	case FormEmpty:
		return "", fmt.Errorf("the annotation has no element %d", index)
	case FormComma:
		pieces := strings.Split(annotation, ",")
		if index < 0 || index >= len(pieces) {
			return "", fmt.Errorf("the annotation has no element %d", index)
		}
		pieces = slices.Delete(pieces, index, index+1)
		if index == 0 && len(pieces) > 0 {
			pieces[0] = strings.TrimLeft(pieces[0], " \t\r\n")
		}
		out = strings.Join(pieces, ",")
	default:
		list, err := scanJSONList(annotation)
		if err != nil {
			return "", err
		}
		n := len(list.spans)
		switch {
		case index < 0 || index >= n:
			return "", fmt.Errorf("the annotation has no element %d", index)
		case n == 1:
			out = ""
		case index < n-1:
			out = annotation[:list.spans[index][0]] + annotation[list.spans[index+1][0]:]
		default:
			out = annotation[:list.spans[index-1][1]] + annotation[list.spans[index][1]:]
		}
	}
	if strings.TrimSpace(out) == "" {
		return "", nil
	}
	return out, nil
}

// appendComma adds item after the last element, separated like the annotation's first two
// elements (", " when there is only one).
func appendComma(annotation, item string) string {
	body := strings.TrimRight(annotation, " \t\r\n")
	trailing := annotation[len(body):]
	sep := " "
	if pieces := strings.Split(body, ","); len(pieces) > 1 {
		p := pieces[1]
		sep = p[:len(p)-len(strings.TrimLeft(p, " \t\r\n"))]
	}
	return body + "," + sep + item + trailing
}

// jsonList is where a JSON list's elements are: spans are [start, end) byte offsets.
type jsonList struct {
	open  int // offset of '['
	spans [][2]int
}

// scanJSONList finds the elements of the annotation's JSON list without re-encoding any.
func scanJSONList(annotation string) (jsonList, error) {
	dec := json.NewDecoder(strings.NewReader(annotation))
	tok, err := dec.Token()
	if err != nil {
		return jsonList{}, fmt.Errorf("the annotation is not a JSON list: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return jsonList{}, fmt.Errorf("the annotation is not a JSON list")
	}
	list := jsonList{open: int(dec.InputOffset()) - 1}
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return jsonList{}, fmt.Errorf("the annotation is not a JSON list: %w", err)
		}
		end := int(dec.InputOffset())
		list.spans = append(list.spans, [2]int{end - len(raw), end})
	}
	if _, err := dec.Token(); err != nil {
		return jsonList{}, fmt.Errorf("the annotation is not a JSON list: %w", err)
	}
	return list, nil
}

// appendJSON adds element after the last element of the JSON list, separated like the first
// element is from '[' (e.g. ",\n  " in an indented list, "," in a compact one).
func appendJSON(annotation, element string) (string, error) {
	list, err := scanJSONList(annotation)
	if err != nil {
		return "", err
	}
	if len(list.spans) == 0 {
		return annotation[:list.open+1] + element + annotation[list.open+1:], nil
	}
	sep := "," + annotation[list.open+1:list.spans[0][0]]
	if n := len(list.spans); n > 1 {
		sep = annotation[list.spans[n-2][1]:list.spans[n-1][0]]
	}
	end := list.spans[len(list.spans)-1][1]
	return annotation[:end] + sep + element + annotation[end:], nil
}

// commaToJSON converts a comma-form annotation to the JSON form, element by element, keeping
// which elements named a namespace.
func commaToJSON(annotation string) (string, error) {
	var parts []string
	for _, item := range strings.Split(annotation, ",") {
		e, err := parseCommaItem(item)
		if err != nil {
			return "", fmt.Errorf("converting the annotation to the JSON form: element %q: %w", strings.TrimSpace(item), err)
		}
		js, err := e.json()
		if err != nil {
			return "", err
		}
		parts = append(parts, js)
	}
	return "[" + strings.Join(parts, ",") + "]", nil
}

// problemKey identifies a problem apart from its position, which an edit shifts.
func problemKey(p attachment.Problem) string { return p.Reason + "\x00" + p.Element }

// CheckEdit runs the annotation an edit would write through netplug's own parser. It refuses
// (ExitRefused) an annotation the controller would reject as a whole, and any element problem
// the edit introduces; problems the annotation already had come back as warnings.
func CheckEdit(before, after, podNamespace string) (attachment.Selection, []string, error) {
	old, err := attachment.ParseSelection(before, podNamespace)
	if err != nil {
		return attachment.Selection{}, nil, refused("the pod's network-selection annotation is already unusable (%v): fix or remove it first", err)
	}
	sel, err := attachment.ParseSelection(after, podNamespace)
	if err != nil {
		return attachment.Selection{}, nil, refused("netplug would refuse the annotation: %v", err)
	}
	known := map[string]int{}
	for _, p := range old.Problems {
		known[problemKey(p)]++
	}
	var warnings []string
	for _, p := range sel.Problems {
		if known[problemKey(p)] > 0 {
			known[problemKey(p)]--
			warnings = append(warnings, fmt.Sprintf("netplug already refuses %s (%s); it keeps every interface until that is fixed", p.Error(), p.Reason))
			continue
		}
		return attachment.Selection{}, nil, refused("netplug would refuse it: %s (%s)", p.Error(), p.Reason)
	}
	return sel, warnings, nil
}
