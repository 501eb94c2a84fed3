package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/executor"
)

// Hot-plug of pool devices into running pods: a selection element whose NAD names one of
// netplug's NIC pools in k8s.v1.cni.cncf.io/resourceName takes a free device of that pool.
// The device is reserved in memory, named in the interface's record before the ADD, written
// into the config netplug sends (the /delegate API never injects it), and given back to the
// pool only once no record holds it.

// ResourceNameAnnot is the NAD annotation that ties a network to a device-plugin resource.
const ResourceNameAnnot = "k8s.v1.cni.cncf.io/resourceName"

// nadResource is the resourceName the NAD of a asks for, "" for none (or no NAD: resolve
// reports that).
func (c *Controller) nadResource(a attachment.Attachment) string {
	nad, err := c.nads.NetworkAttachmentDefinitions(a.Namespace).Get(a.Network)
	if err != nil {
		return ""
	}
	return nad.Annotations[ResourceNameAnnot]
}

// deviceFor gives an annotation element whose NAD names a pool a device of it, written into
// config: the device its old record held (keep, a replug), else a free one. ok is false when
// the element cannot be plugged now; it is then reported, and retried when a device frees up
// rather than on a backoff.
func (c *Controller) deviceFor(ctx context.Context, obs *observation, r *run, a attachment.Attachment, config []byte, keep *checkpoint.Device) (*checkpoint.Device, []byte, bool) {
	if a.Source != attachment.SourceAnnotation {
		return nil, config, true
	}
	resource := c.nadResource(a)
	if resource == "" {
		return nil, config, true
	}
	pod := obs.pod
	if c.opts.Devices == nil || !c.opts.Devices.NICPool(resource) {
		c.warn(pod, ReasonDeviceUnavailable, "%s as %s: the network takes a device of %s, which is not a netplug device pool on this node: a running pod can only be given a device of netplug's pools; nothing was called",
			a.NetworkName(), a.Interface, resource)
		return nil, nil, false
	}
	var dev devices.Device
	var rec *checkpoint.Device
	if keep != nil && keep.Pool == resource {
		rec, dev = keep, devices.Device{ID: keep.ID, Interface: keep.Interface, PCI: keep.PCI}
	} else {
		res, err := c.opts.Devices.Reserve(ctx, resource, devices.Owner(pod.Namespace, pod.Name, a.Interface))
		if errors.Is(err, devices.ErrPoolExhausted) {
			c.poolWaiters.add(resource, key{Namespace: pod.Namespace, Name: pod.Name})
			c.warn(pod, ReasonPoolExhausted, "%s as %s: pool %s has no free device; it is plugged as soon as one frees up", a.NetworkName(), a.Interface, resource)
			return nil, nil, false
		}
		if err != nil {
			c.warn(pod, ReasonDeviceLookup, "%s as %s: %v", a.NetworkName(), a.Interface, err)
			r.failed = append(r.failed, fmt.Sprintf("%s: %v", a, err))
			return nil, nil, false
		}
		rec, dev = executor.DeviceRecord(res), res.Device
	}
	config, err := devices.InjectDevice(config, dev)
	if err != nil {
		c.opts.Devices.Unreserve(resource, dev.ID)
		c.warn(pod, ReasonInvalidNetwork, "%s as %s: %v", a.NetworkName(), a.Interface, err)
		return nil, nil, false
	}
	klog.FromContext(ctx).Info("Device picked for a hot-plug", "network", a.NetworkName(), "interface", a.Interface, "pool", resource, "device", dev.ID)
	return rec, config, true
}

// deviceInfo is the network-status device-info of a PCI device; Multus's format has none for
// a link without a bus (a veth).
func deviceInfo(pci string) *nadv1.DeviceInfo {
	if pci == "" {
		return nil
	}
	return &nadv1.DeviceInfo{Type: nadv1.DeviceInfoTypePCI, Version: nadv1.DeviceInfoVersion, Pci: &nadv1.PciDevice{PciAddress: pci}}
}

// returnDevices gives back to their pools the devices of the records a reconcile removed:
// those held before (before, and the outcomes' records) and by no record after (held).
func (c *Controller) returnDevices(pod *corev1.Pod, before []checkpoint.Entry, outcomes []executor.Outcome, held []checkpoint.Entry) {
	if c.opts.Devices == nil {
		return
	}
	still := map[string]bool{}
	for _, e := range held {
		if e.Device != nil {
			still[deviceKey(e.Device)] = true
		}
	}
	seen := map[string]bool{}
	give := func(d *checkpoint.Device) {
		if d == nil || still[deviceKey(d)] || seen[deviceKey(d)] {
			return
		}
		seen[deviceKey(d)] = true
		c.returnDevice(pod, d)
	}
	for _, e := range before {
		give(e.Device)
	}
	for _, o := range outcomes {
		give(o.Record.Device)
	}
}

// deviceKey identifies a device for set membership.
func deviceKey(d *checkpoint.Device) string { return d.Pool + "\x00" + d.ID }

// returnDevice gives one device back to its pool, with an event on the pod when there is one.
func (c *Controller) returnDevice(pod *corev1.Pod, d *checkpoint.Device) {
	c.opts.Devices.Unreserve(d.Pool, d.ID)
	if pod != nil {
		c.event(pod, corev1.EventTypeNormal, ReasonDeviceReturned, "device %s (%s) is back on the host and in pool %s", d.ID, d.Interface, d.Pool)
	}
}

// restoreDevices marks out every device a record holds, before any reconcile picks one: after
// a restart the pool's state comes back from the checkpoints (PodResources and the host's
// links give the rest).
func (c *Controller) restoreDevices(ctx context.Context) {
	if c.opts.Devices == nil {
		return
	}
	uids, err := c.checkpoints.Pods()
	if err != nil {
		klog.FromContext(ctx).Error(err, "Listing checkpoints for hot-plugged devices")
		return
	}
	n := 0
	for _, uid := range uids {
		listing, err := c.checkpoints.List(uid)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Reading checkpoints for hot-plugged devices", "podUID", uid)
			continue
		}
		for _, e := range listing.Entries {
			if e.Device != nil {
				c.opts.Devices.Restore(e.Device.Pool, e.Device.ID, devices.Owner(e.PodNamespace, e.PodName, e.Interface))
				n++
			}
		}
	}
	if n > 0 {
		klog.FromContext(ctx).Info("Hot-plugged devices restored from checkpoints", "devices", n)
	}
}

// PoolFreed is told that a device of pool resource may have become free: the pods waiting
// for one are queued again.
func (c *Controller) PoolFreed(resource string) {
	for _, k := range c.poolWaiters.take(resource) {
		c.plugs.Add(k)
	}
}

// poolWaiters are the pods with an element waiting for a device, by pool.
type poolWaiters struct {
	mu   sync.Mutex
	pods map[string]map[key]bool
}

func (w *poolWaiters) add(resource string, k key) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pods == nil {
		w.pods = map[string]map[key]bool{}
	}
	if w.pods[resource] == nil {
		w.pods[resource] = map[key]bool{}
	}
	w.pods[resource][k] = true
}

func (w *poolWaiters) take(resource string) []key {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []key
	for k := range w.pods[resource] {
		out = append(out, k)
	}
	delete(w.pods, resource)
	return out
}
