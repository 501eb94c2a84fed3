package devices

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Pool is one configured device pool: a resource name and exactly one matcher.
//
//	{"resourceName": "netplug.io/veth",  "interfacePrefix": "npdev"}
//	{"resourceName": "netplug.io/virtio", "driver": "virtio_net"}
//	{"resourceName": "netplug.io/nic",    "pciAddresses": ["0000:00:05.0"]}
//	{"resourceName": "netplug.io/tun",    "charDevices": ["/dev/net/tun"]}
type Pool struct {
	// ResourceName is the extended resource the kubelet advertises, "<domain>/<name>".
	ResourceName string `json:"resourceName"`
	// InterfacePrefix matches host links whose name starts with it.
	InterfacePrefix string `json:"interfacePrefix,omitempty"`
	// Driver matches host links bound to this kernel driver (virtio_net, veth, ...).
	Driver string `json:"driver,omitempty"`
	// PCIAddresses matches host links of these PCI functions (0000:00:05.0).
	PCIAddresses []string `json:"pciAddresses,omitempty"`
	// CharDevices are device nodes (absolute paths under /dev).
	CharDevices []string `json:"charDevices,omitempty"`
	// Shares is how many pods may hold each device node at once (charDevices only, 1..1000,
	// default 1): /dev/net/tun or /dev/kvm serve many pods, and each share is one device ID.
	Shares int `json:"shares,omitempty"`
}

// Kind is what a pool hands out.
type Kind string

// The kinds of pools.
const (
	KindNIC  Kind = "nic"
	KindChar Kind = "char"
)

// Kind says whether the pool hands out NICs or character devices.
func (p Pool) Kind() Kind {
	if len(p.CharDevices) > 0 {
		return KindChar
	}
	return KindNIC
}

// Name is the part of the resource name after the domain: it names the plugin's socket
// (netplug-<name>.sock) and the generated CNI network (netplug-<name>).
func (p Pool) Name() string {
	_, name, _ := strings.Cut(p.ResourceName, "/")
	return name
}

// Matcher names the pool's matcher, as written in the ConfigMap.
func (p Pool) Matcher() string {
	switch {
	case p.InterfacePrefix != "":
		return "interfacePrefix"
	case p.Driver != "":
		return "driver"
	case len(p.PCIAddresses) > 0:
		return "pciAddresses"
	}
	return "charDevices"
}

// PoolsKey is the ConfigMap key of the pools; it is named in every validation error.
const PoolsKey = "devicePools"

var (
	driverPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	pciPattern    = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)
	knownFields   = []string{"resourceName", "interfacePrefix", "driver", "pciAddresses", "charDevices", "shares"}
)

// ParsePools decodes and validates the value of the devicePools key: a JSON list of pools. An
// unknown field (a misspelt matcher), a pool with no matcher or with two, an invalid resource
// name, and pools that overlap (one resource name twice, prefixes of one another, one driver,
// PCI address or device node twice) are errors that name the pool.
func ParsePools(raw json.RawMessage) ([]Pool, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("want a list of pools: %w", err)
	}
	pools := make([]Pool, 0, len(items))
	for i, item := range items {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(item, &fields); err != nil {
			return nil, fmt.Errorf("pool %d: want an object: %w", i, err)
		}
		for name := range fields {
			if !slices.Contains(knownFields, name) {
				return nil, fmt.Errorf("pool %d: unknown field %q (known fields: %s)", i, name, strings.Join(knownFields, ", "))
			}
		}
		dec := json.NewDecoder(bytes.NewReader(item))
		dec.DisallowUnknownFields()
		var p Pool
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("pool %d: %w", i, err)
		}
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("pool %d (%s): %w", i, p.ResourceName, err)
		}
		pools = append(pools, p)
	}
	if err := overlaps(pools); err != nil {
		return nil, err
	}
	return pools, nil
}

func (p *Pool) validate() error {
	if err := ValidateResourceName(p.ResourceName); err != nil {
		return err
	}
	matchers := 0
	for _, set := range []bool{p.InterfacePrefix != "", p.Driver != "", len(p.PCIAddresses) > 0, len(p.CharDevices) > 0} {
		if set {
			matchers++
		}
	}
	if matchers != 1 {
		return fmt.Errorf("want exactly one matcher of interfacePrefix, driver, pciAddresses, charDevices; got %d", matchers)
	}
	switch {
	case p.Shares != 0 && len(p.CharDevices) == 0:
		return fmt.Errorf("shares applies to charDevices pools only")
	case p.Shares < 0 || p.Shares > 1000:
		return fmt.Errorf("shares: want 1..1000")
	case p.Shares == 0:
		p.Shares = 1
	}
	switch {
	case p.InterfacePrefix != "":
		// A prefix is a part of a link name: the rules of a link name, without a length floor.
		if len(p.InterfacePrefix) > 15 || strings.ContainsAny(p.InterfacePrefix, "/: \t\n") {
			return fmt.Errorf("interfacePrefix %q cannot begin a link name", p.InterfacePrefix)
		}
	case p.Driver != "":
		if !driverPattern.MatchString(p.Driver) {
			return fmt.Errorf("driver %q is not a kernel driver name", p.Driver)
		}
	case len(p.PCIAddresses) > 0:
		for i, a := range p.PCIAddresses {
			p.PCIAddresses[i] = strings.ToLower(a)
			if !pciPattern.MatchString(p.PCIAddresses[i]) {
				return fmt.Errorf("pciAddresses: %q is not a PCI address such as 0000:00:05.0", a)
			}
		}
	default:
		for _, d := range p.CharDevices {
			if !filepath.IsAbs(d) || filepath.Clean(d) != d || !strings.HasPrefix(d, "/dev/") {
				return fmt.Errorf("charDevices: %q is not a clean absolute path under /dev", d)
			}
		}
	}
	return nil
}

// ValidateResourceName accepts an extended resource name in a domain, such as netplug.io/veth:
// a qualified name with a prefix outside kubernetes.io, whose name part is a DNS label (it names
// a socket and a CNI network).
func ValidateResourceName(name string) error {
	domain, short, ok := strings.Cut(name, "/")
	if !ok || domain == "" {
		return fmt.Errorf("resourceName %q: want <domain>/<name>, such as netplug.io/veth", name)
	}
	if errs := validation.IsQualifiedName(name); len(errs) > 0 {
		return fmt.Errorf("resourceName %q: %s", name, strings.Join(errs, "; "))
	}
	if domain == "kubernetes.io" || strings.HasSuffix(domain, ".kubernetes.io") || domain == "k8s.io" || strings.HasSuffix(domain, ".k8s.io") {
		return fmt.Errorf("resourceName %q: the %s domain is reserved", name, domain)
	}
	if errs := validation.IsDNS1123Label(short); len(errs) > 0 {
		return fmt.Errorf("resourceName %q: the name part: %s", name, strings.Join(errs, "; "))
	}
	if len("netplug-"+short) > 63 {
		return fmt.Errorf("resourceName %q: the name part is too long", name)
	}
	return nil
}

// overlaps refuses two pools that could claim one device. Overlaps only discovery can see (a
// prefix pool and a driver pool matching the same link) are resolved there: such a device is in
// neither pool (see Match).
func overlaps(pools []Pool) error {
	names := map[string]string{}
	claims := map[string]string{} // "kind:value" -> resource name
	claim := func(p Pool, what string) error {
		if other, dup := claims[what]; dup {
			return fmt.Errorf("pools %s and %s overlap: both match %s", other, p.ResourceName, strings.SplitN(what, ":", 2)[1])
		}
		claims[what] = p.ResourceName
		return nil
	}
	var prefixes []Pool
	for _, p := range pools {
		if other, dup := names[p.Name()]; dup {
			return fmt.Errorf("pools %s and %s overlap: both are named %q (the part after the domain names the plugin socket)", other, p.ResourceName, p.Name())
		}
		names[p.Name()] = p.ResourceName
		var err error
		switch {
		case p.InterfacePrefix != "":
			for _, q := range prefixes {
				if strings.HasPrefix(p.InterfacePrefix, q.InterfacePrefix) || strings.HasPrefix(q.InterfacePrefix, p.InterfacePrefix) {
					return fmt.Errorf("pools %s and %s overlap: prefixes %q and %q", q.ResourceName, p.ResourceName, q.InterfacePrefix, p.InterfacePrefix)
				}
			}
			prefixes = append(prefixes, p)
		case p.Driver != "":
			err = claim(p, "driver:driver "+p.Driver)
		case len(p.PCIAddresses) > 0:
			for _, a := range p.PCIAddresses {
				if err = claim(p, "pci:PCI address "+a); err != nil {
					break
				}
			}
		default:
			for _, d := range p.CharDevices {
				if err = claim(p, "char:device "+d); err != nil {
					break
				}
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// validPCI reports whether s has the form of a PCI address.
func validPCI(s string) bool { return pciPattern.MatchString(s) }
