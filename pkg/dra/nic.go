package dra

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	resourceapi "k8s.io/api/resource/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/executor"
)

// Pool NICs as DRA devices. The node's NIC pools (devicePools of kind NIC) are published in a
// ResourceSlice pool of their own, "<node>/nic" (a node name has no "/", so it never collides
// with another node's pools). A claim allocated one of them (class netplug.io-nic) gets the NIC
// moved into its pod by the NRI hook, with host-device, under its own name or the claim's
// "interface", and back on the host when the sandbox stops. From prepare to unprepare the
// device is reserved in its pool: Unhealthy to the kubelet, never picked by hot-plug.

// DeviceTypeNIC is the "type" attribute of the pool NIC devices.
const DeviceTypeNIC = "nic"

// nicPrefix starts the name of every pool NIC device (the CNI devices are "cni-N").
const nicPrefix = "nic-"

// NICPoolName is the ResourceSlice pool of node's pool NICs.
func NICPoolName(node string) string { return node + "/nic" }

// NICDeviceName is the ResourceSlice name of a pool device, from its kubelet ID: "nic-" and the
// ID as a DNS label (lower case; anything but a-z, 0-9 and "-" becomes "-"; at most 63
// characters): npdev30 is nic-npdev30, the PCI NIC 0000:00:04.0 is nic-0000-00-04-0.
func NICDeviceName(id string) string {
	var b strings.Builder
	b.WriteString(nicPrefix)
	for _, r := range strings.ToLower(id) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	name := b.String()
	if len(name) > 63 {
		name = name[:63]
	}
	return strings.TrimRight(name, "-")
}

// PreparedNIC is the pool device behind a claim's device, as prepare found it.
type PreparedNIC struct {
	// Pool is the pool's resource name (netplug.io/veth).
	Pool string `json:"pool"`
	// ID is the kubelet's device ID; Interface the host link; PCI its PCI address, if any.
	ID        string `json:"id"`
	Interface string `json:"interface"`
	PCI       string `json:"pci,omitempty"`
}

// nicEntry is one published pool device.
type nicEntry struct {
	resource string
	device   devices.Device
}

// publishedNICs are the pool devices the slice lists, by device name: the NICs of the node's
// NIC pools that are healthy (present with carrier, reserved by nobody: a reserved device is
// Unhealthy in State.Devices) and that the kubelet has not allocated to a pod (flow b; the
// allocation is left out when PodResources does not answer). Two IDs that sanitize to the same
// name: the first (by pool, then ID) is published, the other is not.
func publishedNICs(ctx context.Context, pools *devices.Source) map[string]nicEntry {
	out := map[string]nicEntry{}
	if pools == nil {
		return out
	}
	var allocated map[string]map[string]bool
	if pools.Allocations != nil && hasNICDevices(pools) {
		var err error
		if allocated, err = pools.Allocations.Allocated(ctx); err != nil {
			klog.FromContext(ctx).V(2).Info("PodResources did not answer; the slice lists the pools' devices without it", "err", err)
		}
	}
	for _, resource := range slices.Sorted(maps.Keys(pools.States)) {
		st := pools.States[resource]
		if st.Pool.Kind() != devices.KindNIC {
			continue
		}
		devs, _ := st.Devices()
		for _, d := range devs {
			if !d.Healthy || d.Interface == "" || allocated[resource][d.ID] {
				continue
			}
			name := NICDeviceName(d.ID)
			if other, dup := out[name]; dup {
				klog.FromContext(ctx).Info("Pool device not published: another one has the same ResourceSlice name",
					"device", d.ID, "pool", resource, "name", name, "other", other.device.ID)
				continue
			}
			out[name] = nicEntry{resource: resource, device: d}
		}
	}
	return out
}

// hasNICDevices reports whether a NIC pool has a device: without one the kubelet's allocations
// (a PodResources List of every pod of the node, every poll) are not needed.
func hasNICDevices(pools *devices.Source) bool {
	for _, st := range pools.States {
		if devs, _ := st.Devices(); st.Pool.Kind() == devices.KindNIC && len(devs) > 0 {
			return true
		}
	}
	return false
}

// nicDevice is the slice's entry of a pool device. Attributes use dranet's names where they mean
// the same: ifName (the host link), pciAddress (a PCI NIC), virtual (no PCI device behind it:
// a veth); and pool (the pool's resource name) and type "nic".
func nicDevice(name string, e nicEntry) resourceapi.Device {
	attrs := map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
		"type":    {StringValue: ptr.To(DeviceTypeNIC)},
		"pool":    {StringValue: ptr.To(e.resource)},
		"ifName":  {StringValue: ptr.To(e.device.Interface)},
		"virtual": {BoolValue: ptr.To(e.device.PCI == "")},
	}
	if e.device.PCI != "" {
		attrs["pciAddress"] = resourceapi.DeviceAttribute{StringValue: ptr.To(e.device.PCI)}
	}
	return resourceapi.Device{Name: name, Attributes: attrs}
}

// NICDevices lists the slice's pool devices, sorted by name.
func NICDevices(ctx context.Context, pools *devices.Source) []resourceapi.Device {
	nics := publishedNICs(ctx, pools)
	out := make([]resourceapi.Device, 0, len(nics))
	for _, name := range slices.Sorted(maps.Keys(nics)) {
		out = append(out, nicDevice(name, nics[name]))
	}
	return out
}

// NodeResources is what the node's ResourceSlices publish: the virtual CNI devices (Resources)
// and, when the node has NIC pools, the pool "<node>/nic" of their devices, 128 per slice.
func NodeResources(ctx context.Context, nodeName string, n int, pools *devices.Source) resourceslice.DriverResources {
	r := Resources(nodeName, n)
	if !hasNICPools(pools) {
		return r
	}
	r.Pools[NICPoolName(nodeName)] = nicPool(NICDevices(ctx, pools))
	return r
}

func nicPool(devs []resourceapi.Device) resourceslice.Pool {
	var p resourceslice.Pool
	for len(devs) > resourceapi.ResourceSliceMaxDevices {
		p.Slices = append(p.Slices, resourceslice.Slice{Devices: devs[:resourceapi.ResourceSliceMaxDevices]})
		devs = devs[resourceapi.ResourceSliceMaxDevices:]
	}
	return resourceslice.Pool{Slices: append(p.Slices, resourceslice.Slice{Devices: devs})}
}

func hasNICPools(pools *devices.Source) bool {
	if pools == nil {
		return false
	}
	for _, st := range pools.States {
		if st.Pool.Kind() == devices.KindNIC {
			return true
		}
	}
	return false
}

// Publisher publishes the node's resources (kubeletplugin.Helper).
type Publisher interface {
	PublishResources(ctx context.Context, resources resourceslice.DriverResources) error
}

// PublishNICs publishes the node's resources, and again whenever the devices of a NIC pool
// change (State.Devices' channel: discovery, health, a reservation) or, every poll, the
// kubelet's allocations do; until ctx ends. A publish that fails is logged and retried at the
// next change or poll.
func PublishNICs(ctx context.Context, p Publisher, nodeName string, n int, pools *devices.Source, poll time.Duration) {
	logger := klog.FromContext(ctx)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var last []resourceapi.Device
	published := false
	for {
		nics := NICDevices(ctx, pools)
		if !published || !apiequality.Semantic.DeepEqual(nics, last) {
			r := Resources(nodeName, n)
			r.Pools[NICPoolName(nodeName)] = nicPool(nics)
			if err := p.PublishResources(ctx, r); err != nil {
				logger.Error(err, "Publishing the node's ResourceSlice")
			} else {
				last, published = nics, true
				logger.V(2).Info("Published the node's pool NICs", "devices", len(nics))
			}
		}
		cases := []reflect.SelectCase{
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(tick.C)},
		}
		for _, st := range pools.States {
			if st.Pool.Kind() == devices.KindNIC {
				_, changed := st.Devices()
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(changed)})
			}
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			return
		}
	}
}

// nicOwner names a claim that holds a pool device, in the pool's logs and errors.
func nicOwner(c PreparedClaim) string { return "claim " + c.Namespace + "/" + c.Name }

// reserveNICs reserves the pool devices of a claim being prepared. A device the claim's earlier
// record already holds (a repeated prepare, or one after a restart) is the claim's: it is
// reserved again as it is. Any other must be free now: healthy, reserved by nobody, and not
// allocated by the kubelet (PodResources). It returns the devices it newly reserved.
func (d *Driver) reserveNICs(ctx context.Context, c PreparedClaim, prev PreparedClaim) ([]PreparedNIC, error) {
	var reserved []PreparedNIC
	undo := func(err error) ([]PreparedNIC, error) {
		for _, n := range reserved {
			d.pools.Unreserve(n.Pool, n.ID)
		}
		return nil, err
	}
	var allocated map[string]map[string]bool
	for _, dev := range c.Devices {
		if dev.NIC == nil {
			continue
		}
		if holds(prev, *dev.NIC) {
			d.pools.Restore(dev.NIC.Pool, dev.NIC.ID, nicOwner(c))
			continue
		}
		if allocated == nil && d.pools.Allocations != nil {
			all, err := d.pools.Allocations.Allocated(ctx)
			if err != nil {
				return undo(fmt.Errorf("asking the kubelet which devices of %s it allocated: %w", dev.NIC.Pool, err))
			}
			allocated = all
		}
		if allocated[dev.NIC.Pool][dev.NIC.ID] {
			return undo(fmt.Errorf("request %q: device %s (%s) of pool %s is allocated by the kubelet to a pod (resource limit)", dev.Request, dev.Device, dev.NIC.Interface, dev.NIC.Pool))
		}
		d.pools.Restore(dev.NIC.Pool, dev.NIC.ID, nicOwner(c))
		reserved = append(reserved, *dev.NIC)
	}
	return reserved, nil
}

func holds(c PreparedClaim, n PreparedNIC) bool {
	return slices.ContainsFunc(c.Devices, func(d PreparedDevice) bool { return d.NIC != nil && *d.NIC == n })
}

// unreserveNICs gives a claim's pool devices back to their pools.
func (d *Driver) unreserveNICs(c PreparedClaim) {
	if d.pools == nil {
		return
	}
	for _, dev := range c.Devices {
		if dev.NIC != nil {
			d.pools.Unreserve(dev.NIC.Pool, dev.NIC.ID)
		}
	}
}

// RestoreReservations reserves again the pool devices of every prepared claim: after a restart
// of netplug the pools know nothing of them, and a claim prepared before it (its sandbox not
// started yet, so no checkpoint names the device) must keep its device out of everyone's reach.
func RestoreReservations(claims interface {
	List() ([]PreparedClaim, error)
}, pools *devices.Source) (int, error) {
	if pools == nil {
		return 0, nil
	}
	all, err := claims.List()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range all {
		for _, dev := range c.Devices {
			if dev.NIC != nil {
				pools.Restore(dev.NIC.Pool, dev.NIC.ID, nicOwner(c))
				n++
			}
		}
	}
	return n, nil
}

// RestoreReservations reserves again the pool devices of the hook's prepared claims (see
// RestoreReservations); idempotent. Call it before anything can pick a pool device (the
// controller's hot-plug).
func (h *Hook) RestoreReservations() (int, error) { return RestoreReservations(h.Claims, h.Pools) }

// nicStep is what the hook needs to move a claim's pool NIC in: host-device's config (with the
// link's host addresses, read now, before the move) and the device's checkpoint record.
func (h *Hook) nicStep(n PreparedNIC) ([]byte, *checkpoint.Device, error) {
	if h.Pools == nil {
		return nil, nil, fmt.Errorf("pool %s is not configured on this node (devicePools)", n.Pool)
	}
	st, ok := h.Pools.States[n.Pool]
	if !ok || st.Pool.Kind() != devices.KindNIC {
		return nil, nil, fmt.Errorf("%s is not a NIC pool of this node", n.Pool)
	}
	r := devices.Reservation{Pool: n.Pool, Device: devices.Device{ID: n.ID, Interface: n.Interface, PCI: n.PCI}}
	if h.Pools.Host != nil {
		host, err := h.Pools.Host.State(n.Interface)
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s on the host: %w", n.Interface, err)
		}
		r.Host = host
	}
	return devices.HostDeviceConfig(st.Pool, n.Interface, r.Host), executor.DeviceRecord(r), nil
}

// pciInfo is the network-status device-info of a PCI NIC (Multus's format has none for a veth).
func pciInfo(pci string) *nadv1.DeviceInfo {
	if pci == "" {
		return nil
	}
	return &nadv1.DeviceInfo{Type: nadv1.DeviceInfoTypePCI, Version: nadv1.DeviceInfoVersion, Pci: &nadv1.PciDevice{PciAddress: pci}}
}
