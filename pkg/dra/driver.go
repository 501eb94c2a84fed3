// Package dra makes netplug a DRA driver (netplug.io): the kubelet plugin that prepares and
// unprepares ResourceClaims, the node's ResourceSlice of virtual CNI devices, the NRI hook that
// plugs a pod's prepared claims into its sandbox before any container starts, and the claim
// status writer. Plugging goes through pkg/executor, with the same checkpoint records (Origin
// "claim") as hot-plug, so it is crash-safe the same way and the annotation path never touches
// a claim's interface.
package dra

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/dra/config"
)

// DriverName is netplug's DRA driver name.
const DriverName = config.DriverName

// DeviceType is the "type" attribute of the virtual CNI devices.
const DeviceType = "cni"

// Releaser releases what the NRI hook plugged for a claim that is being unprepared (a missed
// StopPodSandbox, e.g. while netplug was down).
type Releaser interface {
	ReleaseClaim(ctx context.Context, c PreparedClaim) error
}

// Claims is where prepared claims are recorded (ClaimStore).
type Claims interface {
	Save(c PreparedClaim) error
	Get(uid string) (PreparedClaim, bool, error)
	Delete(uid string) error
	ForPod(podUID string) ([]PreparedClaim, error)
}

// Driver implements kubeletplugin.DRAPlugin.
type Driver struct {
	claims   Claims
	releaser Releaser
	// pools and nodeName: the node's device pools, whose NICs claims may be allocated (nil:
	// none), and the node (its NIC devices are in pool NICPoolName(nodeName)).
	pools    *devices.Source
	nodeName string
}

var _ kubeletplugin.DRAPlugin = (*Driver)(nil)

// NewDriver returns a Driver over a claim store and the hook that releases unprepared claims.
func NewDriver(claims Claims, releaser Releaser) *Driver {
	return &Driver{claims: claims, releaser: releaser}
}

// WithPools lets claims be allocated the NICs of the node's device pools (pools may be nil).
func (d *Driver) WithPools(pools *devices.Source, nodeName string) *Driver {
	d.pools, d.nodeName = pools, nodeName
	return d
}

// PrepareResourceClaims validates each claim's configuration, reserves the pool NICs it was
// allocated, and records it. A bad configuration, or a NIC that is not free, is that claim's
// error: the kubelet reports it on the pod (kubectl describe) and retries, and nothing is
// plugged or reserved.
func (d *Driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	out := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for _, claim := range claims {
		result, err := d.prepareOne(ctx, claim)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Preparing claim", "claim", klog.KObj(claim))
			out[claim.UID] = kubeletplugin.PrepareResult{Err: fmt.Errorf("netplug.io claim %s/%s: %w", claim.Namespace, claim.Name, err)}
			continue
		}
		out[claim.UID] = result
	}
	return out, nil
}

func (d *Driver) prepareOne(ctx context.Context, claim *resourceapi.ResourceClaim) (kubeletplugin.PrepareResult, error) {
	prev, _, err := d.claims.Get(string(claim.UID))
	if err != nil {
		return kubeletplugin.PrepareResult{}, err
	}
	prepared, result, err := prepare(claim, d.nicLookup(ctx, prev))
	if err != nil {
		return result, err
	}
	var reserved []PreparedNIC
	if d.pools != nil {
		if reserved, err = d.reserveNICs(ctx, prepared, prev); err != nil {
			return result, err
		}
	}
	if err := d.claims.Save(prepared); err != nil {
		for _, n := range reserved {
			d.pools.Unreserve(n.Pool, n.ID)
		}
		return result, err
	}
	return result, nil
}

// nicLookup finds the pool NIC behind an allocation result: in the claim's earlier record (a
// repeated prepare: the NIC may be reserved, or in the pod, by now), else among the devices the
// node's slice publishes, which are free.
func (d *Driver) nicLookup(ctx context.Context, prev PreparedClaim) func(resourceapi.DeviceRequestAllocationResult) (PreparedNIC, error) {
	return func(res resourceapi.DeviceRequestAllocationResult) (PreparedNIC, error) {
		if !hasNICPools(d.pools) {
			return PreparedNIC{}, fmt.Errorf("request %q: device %s is a pool NIC, and this node has no NIC pool (devicePools)", res.Request, res.Device)
		}
		if res.Pool != NICPoolName(d.nodeName) {
			return PreparedNIC{}, fmt.Errorf("request %q: device %s is in pool %s, not this node's %s", res.Request, res.Device, res.Pool, NICPoolName(d.nodeName))
		}
		for _, pd := range prev.Devices {
			if pd.NIC != nil && pd.Pool == res.Pool && pd.Device == res.Device {
				return *pd.NIC, nil
			}
		}
		e, ok := publishedNICs(ctx, d.pools)[res.Device]
		if !ok {
			return PreparedNIC{}, fmt.Errorf("request %q: device %s of pool %s is not free on this node (gone from the host, unhealthy, or held by another pod)", res.Request, res.Device, res.Pool)
		}
		return PreparedNIC{Pool: e.resource, ID: e.device.ID, Interface: e.device.Interface, PCI: e.device.PCI}, nil
	}
}

// Prepare turns an allocated claim of CNI devices into its record and the kubelet's result (a
// pool NIC device is an error: it needs the node's pools, see Driver).
func Prepare(claim *resourceapi.ResourceClaim) (PreparedClaim, kubeletplugin.PrepareResult, error) {
	return prepare(claim, nil)
}

// prepare turns an allocated claim into its record and the kubelet's result: one device per
// netplug.io allocation result, each with a valid configuration and a distinct interface. A
// pool NIC device (named nic-…) is found by lookup; its interface is the claim config's
// "interface", or else the NIC's own name.
func prepare(claim *resourceapi.ResourceClaim, lookup func(resourceapi.DeviceRequestAllocationResult) (PreparedNIC, error)) (PreparedClaim, kubeletplugin.PrepareResult, error) {
	pc := PreparedClaim{UID: string(claim.UID), Namespace: claim.Namespace, Name: claim.Name}
	var result kubeletplugin.PrepareResult
	if claim.Status.Allocation == nil {
		return pc, result, errors.New("the claim is not allocated")
	}
	for _, r := range claim.Status.ReservedFor {
		if r.Resource == "pods" && r.APIGroup == "" {
			pc.Pods = append(pc.Pods, string(r.UID))
		}
	}
	interfaces := map[string]string{}
	for _, res := range claim.Status.Allocation.Devices.Results {
		if res.Driver != DriverName {
			continue
		}
		var nic *PreparedNIC
		var a config.Attachment
		if strings.HasPrefix(res.Device, nicPrefix) {
			if lookup == nil {
				return pc, result, fmt.Errorf("request %q: device %s is a pool NIC, and this node has no NIC pool", res.Request, res.Device)
			}
			iface, err := config.ForNIC(claim, res) // a bad config is reported first, whatever the NIC
			if err != nil {
				return pc, result, err
			}
			n, err := lookup(res)
			if err != nil {
				return pc, result, err
			}
			if a, err = nicAttachment(claim, res, iface, n); err != nil {
				return pc, result, err
			}
			nic = &n
		} else {
			var err error
			if a, err = config.ForDevice(claim, res); err != nil {
				return pc, result, err
			}
		}
		if other, dup := interfaces[a.Interface]; dup {
			return pc, result, fmt.Errorf("requests %q and %q both ask for interface %q", other, res.Request, a.Interface)
		}
		interfaces[a.Interface] = res.Request
		pc.Devices = append(pc.Devices, PreparedDevice{Request: res.Request, Pool: res.Pool, Device: res.Device, Attachment: a, NIC: nic})
		result.Devices = append(result.Devices, kubeletplugin.Device{Requests: []string{res.Request}, PoolName: res.Pool, DeviceName: res.Device})
	}
	return pc, result, nil
}

// nicAttachment is the attachment of a pool NIC device: the NIC under the claim config's
// "interface" or its own name, named in network-status by the claim (namespace/name).
func nicAttachment(claim *resourceapi.ResourceClaim, res resourceapi.DeviceRequestAllocationResult, iface string, n PreparedNIC) (config.Attachment, error) {
	if iface == "" {
		iface = n.Interface
		if err := attachment.ValidateInterfaceName(iface); err != nil {
			return config.Attachment{}, fmt.Errorf("request %q: the NIC's own name: %w; give the claim an \"interface\"", res.Request, err)
		}
	}
	return config.Attachment{Namespace: claim.Namespace, Network: claim.Name, Interface: iface}, nil
}

// UnprepareResourceClaims releases what is still plugged for each claim (normally nothing:
// StopPodSandbox did it) and clears the status it wrote, gives its pool NICs back, and drops its
// record. Each step is idempotent: a failure is the kubelet's to retry, and the record stays
// until all of them are done.
func (d *Driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	out := make(map[types.UID]error, len(claims))
	for _, c := range claims {
		pc, ok, err := d.claims.Get(string(c.UID))
		if err == nil && ok && d.releaser != nil {
			err = d.releaser.ReleaseClaim(ctx, pc)
		}
		if err == nil && ok {
			d.unreserveNICs(pc)
		}
		if err == nil {
			err = d.claims.Delete(string(c.UID))
		}
		if err != nil {
			klog.FromContext(ctx).Error(err, "Unpreparing claim", "claim", c.String())
		}
		out[c.UID] = err
	}
	return out, nil
}

// HandleError logs errors of the kubelet plugin's background work (ResourceSlice publishing).
func (d *Driver) HandleError(ctx context.Context, err error, msg string) {
	klog.FromContext(ctx).Error(err, msg)
}

// Resources is what the node's ResourceSlice publishes: a pool named after the node of n
// virtual CNI devices, cni-0 … cni-(n-1). Their attributes use dranet's names where they mean
// the same: "virtual" (true: no host device behind it) and "type".
func Resources(nodeName string, n int) resourceslice.DriverResources {
	devices := make([]resourceapi.Device, 0, n)
	for i := range n {
		devices = append(devices, resourceapi.Device{
			Name: "cni-" + strconv.Itoa(i),
			Attributes: map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
				"type":    {StringValue: ptr.To(DeviceType)},
				"virtual": {BoolValue: ptr.To(true)},
			},
		})
	}
	return resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{
		nodeName: {Slices: []resourceslice.Slice{{Devices: devices}}},
	}}
}
