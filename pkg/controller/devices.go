package controller

import (
	"context"
	"errors"
	"strings"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/executor"
)

// Devices is the device pools as the reconciler sees them (devices.Source): the NICs the kubelet
// allocated to a pod become a source of desired state, next to the annotation.
type Devices interface {
	Requests(pod *corev1.Pod) bool
	PodNICs(ctx context.Context, pod *corev1.Pod) ([]devices.NIC, []error, error)
	MarkInPod(resource, iface string, in bool)
	// Hot-plug (hotplug.go): whether a resource is a NIC pool; a free device reserved, restored
	// from a checkpoint, and given back.
	NICPool(resource string) bool
	Reserve(ctx context.Context, resource, owner string) (devices.Reservation, error)
	Restore(resource, id, owner string)
	Unreserve(resource, id string)
}

func (c *Controller) wantsDevices(pod *corev1.Pod) bool {
	return c.opts.Devices != nil && c.opts.Devices.Requests(pod)
}

// observeDevices fills in the pod's device-backed attachments: one per allocated NIC, under its
// host name, in network "<domain>/<pool>" (the resource name). Without an answer from
// PodResources there are none this time: device attachments are never removed for being
// missing, so nothing is lost.
func (c *Controller) observeDevices(ctx context.Context, obs *observation) error {
	obs.nics = map[string]devices.NIC{}
	if !c.wantsDevices(obs.pod) {
		return nil
	}
	nics, hostErrs, err := c.opts.Devices.PodNICs(ctx, obs.pod)
	if err != nil {
		c.warn(obs.pod, ReasonDeviceLookup, "asking the kubelet which NICs the pod holds: %v", err)
		return err
	}
	for _, err := range hostErrs {
		c.warn(obs.pod, ReasonDeviceLookup, "%v; the NIC moves without its host addresses", err)
	}
	for _, n := range nics {
		if err := attachment.ValidateInterfaceName(n.Device.Interface); err != nil {
			c.warn(obs.pod, ReasonInvalidInterface, "NIC %s of %s: %v", n.Device.ID, n.Pool.ResourceName, err)
			continue
		}
		obs.nics[n.Device.Interface] = n
		ns, name, _ := strings.Cut(n.Pool.ResourceName, "/")
		obs.devices = append(obs.devices, attachment.Attachment{Namespace: ns, Network: name, Interface: n.Device.Interface,
			Index: -1, Source: attachment.SourceDevice, AttributesKnown: true, Confirmed: true})
		for _, e := range obs.current {
			if e.Interface == n.Device.Interface && e.Origin == checkpoint.OriginDevice && e.InFlight == "" {
				c.opts.Devices.MarkInPod(n.Pool.ResourceName, e.Interface, true) // after a restart
			}
		}
	}
	return nil
}

// deviceConfig is the generated host-device config of a device-backed attachment.
func (c *Controller) deviceConfig(obs *observation, a attachment.Attachment) ([]byte, string, error) {
	n, ok := obs.nics[a.Interface]
	if !ok {
		return nil, ReasonDeviceLookup, errors.New("the kubelet no longer lists this NIC for the pod")
	}
	return n.Config, "", nil
}

// movedIn completes a device-backed ADD: the pool counts the NIC as in a pod, and its
// network-status entry carries Multus's device-info for a PCI NIC.
func (c *Controller) movedIn(obs *observation, a attachment.Attachment, st *nadv1.NetworkStatus) {
	n := obs.nics[a.Interface]
	c.opts.Devices.MarkInPod(n.Pool.ResourceName, a.Interface, true)
	if st != nil {
		st.DeviceInfo = deviceInfo(n.Device.PCI)
	}
}

// movedOut reports a device-pool NIC that a DEL returned to the host, and gives a hot-plugged
// one back to its pool.
func (c *Controller) movedOut(pod *corev1.Pod, e checkpoint.Entry, o executor.Outcome) {
	if c.opts.Devices == nil || (e.Origin != checkpoint.OriginDevice && e.Device == nil) {
		return
	}
	switch {
	case e.Device != nil && e.Origin == checkpoint.OriginClaim:
		// The DRA driver holds a claim's device until the kubelet unprepares the claim.
	case e.Device != nil:
		c.returnDevice(pod, e.Device)
	default:
		c.opts.Devices.MarkInPod(e.Namespace+"/"+e.Network, e.Interface, false)
	}
	if o.RestoreErr != nil {
		c.warn(pod, ReasonHostRestoreFailed, "NIC %s is back on the host without its addresses or MTU: %v", e.Interface, o.RestoreErr)
		return
	}
	if e.Device == nil {
		c.event(pod, corev1.EventTypeNormal, ReasonDeviceMovedOut, "moved NIC %s of %s/%s back to the host", e.Interface, e.Namespace, e.Network)
	}
}

// splitDevices separates the records of device-pool NICs (moved in at start, or hot-plugged):
// they are released as soon as the pod terminates, before the runtime destroys the sandbox's
// network namespace (which would destroy a veth, and return a physical NIC without its name or
// addresses).
func splitDevices(entries []checkpoint.Entry) (nics, rest []checkpoint.Entry) {
	for _, e := range entries {
		if e.Origin == checkpoint.OriginDevice || e.Device != nil {
			nics = append(nics, e)
		} else {
			rest = append(rest, e)
		}
	}
	return nics, rest
}
