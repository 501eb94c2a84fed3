package attachment

import (
	"fmt"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"
)

// maxInterfaceNameLen is IFNAMSIZ-1: the kernel rejects longer names.
const maxInterfaceNameLen = 15

// ValidateInterfaceName applies the kernel's rules for a link name (dev_valid_name) plus ':',
// which the kernel reserves for aliases. Names reach netlink and file paths, so anything else
// is refused before it leaves this process.
func ValidateInterfaceName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("interface name is empty")
	case len(name) > maxInterfaceNameLen:
		return fmt.Errorf("interface name %q is longer than %d characters", name, maxInterfaceNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || unicode.IsSpace(r) || r > unicode.MaxASCII || !unicode.IsPrint(r) {
			return fmt.Errorf("interface name %q contains %q, which is not allowed", name, r)
		}
	}
	return nil
}

// validateNetworkRef checks the NAD namespace and name: they become API paths.
func validateNetworkRef(namespace, name string) error {
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q is invalid: %s", namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("network name %q is invalid: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// ValidateRequest applies the checks of a network-selection element to a request from another
// source (a DRA claim's configuration): the NAD reference when network is not "", the
// interface name when not "", the requested IPs (addresses or CIDRs) and MAC. It returns the
// Problem reason with the error, so that every source says the same thing about the same mistake.
func ValidateRequest(a Attachment) (string, error) {
	if a.Network == "" && a.Namespace == "" {
		a.Namespace, a.Network = "placeholder", "placeholder" // no NAD: inline CNI config
	}
	return validateElement(a)
}
