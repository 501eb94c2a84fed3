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

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

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
}

var _ kubeletplugin.DRAPlugin = (*Driver)(nil)

// NewDriver returns a Driver over a claim store and the hook that releases unprepared claims.
func NewDriver(claims Claims, releaser Releaser) *Driver {
	return &Driver{claims: claims, releaser: releaser}
}

// PrepareResourceClaims validates each claim's configuration and records it. A bad
// configuration is that claim's error: the kubelet reports it on the pod (kubectl describe) and
// retries, and nothing is plugged.
func (d *Driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	out := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for _, claim := range claims {
		prepared, result, err := Prepare(claim)
		if err == nil {
			err = d.claims.Save(prepared)
		}
		if err != nil {
			klog.FromContext(ctx).Error(err, "Preparing claim", "claim", klog.KObj(claim))
			out[claim.UID] = kubeletplugin.PrepareResult{Err: fmt.Errorf("netplug.io claim %s/%s: %w", claim.Namespace, claim.Name, err)}
			continue
		}
		out[claim.UID] = result
	}
	return out, nil
}

// Prepare turns an allocated claim into its record and the kubelet's result: one device per
// netplug.io allocation result, each with a valid configuration and a distinct interface.
func Prepare(claim *resourceapi.ResourceClaim) (PreparedClaim, kubeletplugin.PrepareResult, error) {
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
		a, err := config.ForDevice(claim, res)
		if err != nil {
			return pc, result, err
		}
		if other, dup := interfaces[a.Interface]; dup {
			return pc, result, fmt.Errorf("requests %q and %q both ask for interface %q", other, res.Request, a.Interface)
		}
		interfaces[a.Interface] = res.Request
		pc.Devices = append(pc.Devices, PreparedDevice{Request: res.Request, Pool: res.Pool, Device: res.Device, Attachment: a})
		result.Devices = append(result.Devices, kubeletplugin.Device{Requests: []string{res.Request}, PoolName: res.Pool, DeviceName: res.Device})
	}
	return pc, result, nil
}

// UnprepareResourceClaims releases what is still plugged for each claim (normally nothing:
// StopPodSandbox did it) and drops its record.
func (d *Driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	out := make(map[types.UID]error, len(claims))
	for _, c := range claims {
		pc, ok, err := d.claims.Get(string(c.UID))
		if err == nil && ok && d.releaser != nil {
			err = d.releaser.ReleaseClaim(ctx, pc)
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
