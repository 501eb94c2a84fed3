package dra

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/containerd/nri/pkg/api"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/executor"
	"github.com/netplug/netplug/pkg/podwriter"
)

// The I/O boundaries of the hook; each has one real implementation and a fake in the tests.

// Executor plugs and unplugs one interface with its checkpoint record (executor.Executor).
type Executor interface {
	Add(ctx context.Context, sb executor.Sandbox, a attachment.Attachment, config []byte) executor.Outcome
	AddDevice(ctx context.Context, sb executor.Sandbox, a attachment.Attachment, config []byte, dev *checkpoint.Device) executor.Outcome
	Release(ctx context.Context, rec checkpoint.Entry) executor.Outcome
	Confirm(outcomes []executor.Outcome) ([]executor.Outcome, error)
}

// Records lists a pod's checkpoint records (checkpoint.Store).
type Records interface {
	List(podUID string) (checkpoint.Listing, error)
}

// NADs resolves a NetworkAttachmentDefinition to the CNI config Multus delegates to, for a
// claim in namespace from (namespace isolation applies as for the annotation).
type NADs interface {
	Config(ctx context.Context, from, namespace, name string) ([]byte, error)
}

// ClaimStatus writes a claim's status.devices, and clears the entries of its devices.
type ClaimStatus interface {
	Write(ctx context.Context, c PreparedClaim, results []DeviceResult) error
	Clear(ctx context.Context, c PreparedClaim) error
}

// Events reports on a pod (RecorderEvents).
type Events interface {
	PodWarning(namespace, name, uid, reason, message string)
}

// ReasonClaimPlugFailed is the Warning on a pod whose sandbox failed because a claim's
// interface could not be plugged.
const ReasonClaimPlugFailed = "ClaimPlugFailed"

// PodStatus applies network-status changes to a pod (podwriter).
type PodStatus interface {
	ApplyChanges(ctx context.Context, namespace, name string, changes []podwriter.Change) error
}

// Hook is the NRI plugin: it plugs a pod's prepared claims in RunPodSandbox and unplugs them in
// StopPodSandbox and RemovePodSandbox.
type Hook struct {
	Claims interface {
		ForPod(string) ([]PreparedClaim, error)
		List() ([]PreparedClaim, error)
	}
	Records Records
	Exec    Executor
	NADs    NADs
	Status  ClaimStatus
	Pods    PodStatus
	// Pools are the node's device pools, whose NICs device claims move in (nil: none).
	Pools *devices.Source
	// Events, if set, gets a Warning on the pod when its sandbox fails.
	Events Events
}

// netNS is the path of the sandbox's network namespace ("" for a host-network pod).
func netNS(pod *api.PodSandbox) string {
	if pod.GetLinux() == nil {
		return ""
	}
	for _, ns := range pod.GetLinux().GetNamespaces() {
		if ns.GetType() == "network" {
			return ns.GetPath()
		}
	}
	return ""
}

// RunPodSandbox plugs every device of every claim prepared for the pod into the new sandbox,
// before any container starts: through Multus /delegate for a CNI device, as the pool NIC moved
// in for a NIC device. Devices already plugged into this sandbox (a retried event) are kept; a
// record left in flight, or of an older sandbox, is released first. On any failure what this
// call plugged is released again and the sandbox fails with a message that names the claim, so
// the kubelet retries it; the pod also gets a ClaimPlugFailed Warning with it.
func (h *Hook) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	err := h.runPodSandbox(ctx, pod)
	if err != nil && h.Events != nil {
		h.Events.PodWarning(pod.GetNamespace(), pod.GetName(), pod.GetUid(), ReasonClaimPlugFailed, err.Error())
	}
	return err
}

func (h *Hook) runPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	claims, err := h.Claims.ForPod(pod.GetUid())
	if err != nil || len(claims) == 0 {
		return err
	}
	logger := klog.FromContext(ctx).WithValues("pod", pod.GetNamespace()+"/"+pod.GetName(), "sandbox", pod.GetId())
	sb := executor.Sandbox{PodNamespace: pod.GetNamespace(), PodName: pod.GetName(), PodUID: pod.GetUid(), ID: pod.GetId(), NetNS: netNS(pod)}
	if sb.NetNS == "" {
		return fmt.Errorf("netplug.io: pod %s/%s has ResourceClaims for network interfaces but no network namespace (host network?)", sb.PodNamespace, sb.PodName)
	}
	listing, err := h.Records.List(sb.PodUID)
	if err != nil {
		return fmt.Errorf("netplug.io: reading the pod's checkpoints: %w", err)
	}
	records := map[string]checkpoint.Entry{}
	for _, e := range listing.Entries {
		records[e.Interface] = e
	}
	owner := map[string]string{}
	for _, c := range claims {
		for _, d := range c.Devices {
			if other, dup := owner[d.Attachment.Interface]; dup {
				return fmt.Errorf("netplug.io: claims %s and %s/%s both ask for interface %s", other, c.Namespace, c.Name, d.Attachment.Interface)
			}
			owner[d.Attachment.Interface] = c.Namespace + "/" + c.Name
			if r, ok := records[d.Attachment.Interface]; ok && r.Origin != checkpoint.OriginClaim {
				return fmt.Errorf("netplug.io: claim %s/%s asks for interface %s, which the pod's network selection already has", c.Namespace, c.Name, d.Attachment.Interface)
			}
		}
	}

	var added []executor.Outcome
	var changes []podwriter.Change
	results := make([][]DeviceResult, len(claims))
	fail := func(err error) error {
		for _, o := range added {
			if r := h.Exec.Release(ctx, o.Record); !r.OK() {
				logger.Error(r.Failure, "Releasing an interface after the sandbox failed", "interface", o.Interface)
			}
		}
		return err
	}
	for ci, c := range claims {
		for _, d := range c.Devices {
			iface := d.Attachment.Interface
			if r, ok := records[iface]; ok {
				if r.SandboxID == sb.ID && r.InFlight == "" {
					logger.V(2).Info("Claim interface already plugged", "claim", c.Namespace+"/"+c.Name, "interface", iface)
					continue
				}
				if o := h.Exec.Release(ctx, r); !o.OK() {
					return fail(fmt.Errorf("netplug.io: claim %s/%s: releasing the unfinished %s of interface %s: %w", c.Namespace, c.Name, r.InFlight, iface, o.Failure))
				}
			}
			var o executor.Outcome
			if d.NIC != nil {
				cfg, dev, err := h.nicStep(*d.NIC)
				if err != nil {
					return fail(fmt.Errorf("netplug.io: claim %s/%s request %s: NIC %s: %w", c.Namespace, c.Name, d.Request, d.NIC.Interface, err))
				}
				o = h.Exec.AddDevice(ctx, sb, d.Attachment.Planner(), cfg, dev)
				if o.OK() && o.Status != nil {
					o.Status.DeviceInfo = pciInfo(d.NIC.PCI)
				}
			} else {
				cfg := []byte(d.Attachment.Inline)
				if d.Attachment.NAD() {
					if cfg, err = h.NADs.Config(ctx, c.Namespace, d.Attachment.Namespace, d.Attachment.Network); err != nil {
						return fail(fmt.Errorf("netplug.io: claim %s/%s request %s: network %s/%s: %w", c.Namespace, c.Name, d.Request, d.Attachment.Namespace, d.Attachment.Network, err))
					}
				}
				o = h.Exec.Add(ctx, sb, d.Attachment.Planner(), cfg)
			}
			if !o.OK() {
				if o.Record.Interface != "" {
					added = append(added, o) // in flight: the ADD may have done part of its work
				}
				return fail(fmt.Errorf("netplug.io: claim %s/%s request %s: plugging %s: %s: %w", c.Namespace, c.Name, d.Request, iface, o.Failure.Kind, o.Failure.Err))
			}
			added = append(added, o)
			results[ci] = append(results[ci], DeviceResult{Device: d, Result: o.Result})
			changes = append(changes, podwriter.Change{Interface: iface, Entry: o.Status})
		}
	}
	for ci, c := range claims {
		if len(results[ci]) == 0 {
			continue
		}
		if err := h.Status.Write(ctx, c, results[ci]); err != nil {
			return fail(fmt.Errorf("netplug.io: claim %s/%s: writing its status: %w", c.Namespace, c.Name, err))
		}
	}
	if len(changes) > 0 {
		if err := h.Pods.ApplyChanges(ctx, sb.PodNamespace, sb.PodName, changes); err != nil {
			return fail(fmt.Errorf("netplug.io: writing the pod's network-status: %w", err))
		}
	}
	if _, err := h.Exec.Confirm(added); err != nil {
		// The interfaces are plugged and reported; records left in flight are redone on the next
		// RunPodSandbox of this pod and released with it.
		logger.Error(err, "Settling claim records")
	}
	logger.Info("Plugged the pod's claims", "interfaces", len(added))
	return nil
}

// StopPodSandbox DELs the claim interfaces of the sandbox, with the config they were plugged with.
func (h *Hook) StopPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	h.releaseDevices(ctx, pod)
	return h.release(ctx, pod.GetUid(), func(e checkpoint.Entry) bool { return e.SandboxID == pod.GetId() })
}

// releaseDevices returns the pool NICs the annotation path moved into the stopping sandbox
// (hot-plugged, or allocated by the kubelet and moved in at start) before the runtime destroys
// its netns, which would destroy a veth and leave a physical NIC nameless in the host's: the
// controller's release of a terminating pod races the kubelet, this hook does not. A failure is
// only logged: the controller's release retries it.
func (h *Hook) releaseDevices(ctx context.Context, pod *api.PodSandbox) {
	listing, err := h.Records.List(pod.GetUid())
	if err != nil {
		klog.FromContext(ctx).Error(err, "Listing the records of a stopping sandbox", "pod", pod.GetNamespace()+"/"+pod.GetName())
		return
	}
	for _, e := range listing.Entries {
		if e.Origin == checkpoint.OriginClaim || e.SandboxID != pod.GetId() || (e.Device == nil && e.Origin != checkpoint.OriginDevice) {
			continue
		}
		if o := h.Exec.Release(ctx, e); !o.OK() {
			klog.FromContext(ctx).Error(o.Failure, "Returning a pool NIC from a stopping sandbox", "pod", e.PodNamespace+"/"+e.PodName, "interface", e.Interface)
			continue
		}
		if h.Pools != nil {
			if e.Device != nil {
				h.Pools.Unreserve(e.Device.Pool, e.Device.ID)
			} else {
				h.Pools.MarkInPod(e.Namespace+"/"+e.Network, e.Interface, false)
			}
		}
		klog.FromContext(ctx).Info("Returned a pool NIC from a stopping sandbox", "pod", e.PodNamespace+"/"+e.PodName, "interface", e.Interface)
	}
}

// RemovePodSandbox releases what StopPodSandbox could not (idempotent: nothing is left normally).
func (h *Hook) RemovePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	return h.StopPodSandbox(ctx, pod)
}

// ReleaseClaim releases the interfaces of a claim being unprepared in each of its pods, then
// clears the status.devices entries of its devices.
func (h *Hook) ReleaseClaim(ctx context.Context, c PreparedClaim) error {
	var errs []error
	for _, uid := range c.Pods {
		errs = append(errs, h.release(ctx, uid, func(e checkpoint.Entry) bool {
			return slices.ContainsFunc(c.Devices, func(d PreparedDevice) bool { return d.Attachment.Interface == e.Interface })
		}))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if h.Status == nil {
		return nil
	}
	if err := h.Status.Clear(ctx, c); err != nil {
		return fmt.Errorf("netplug.io: claim %s/%s: clearing its status: %w", c.Namespace, c.Name, err)
	}
	return nil
}

func (h *Hook) release(ctx context.Context, podUID string, match func(checkpoint.Entry) bool) error {
	listing, err := h.Records.List(podUID)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range listing.Entries {
		if e.Origin != checkpoint.OriginClaim || !match(e) {
			continue
		}
		if o := h.Exec.Release(ctx, e); !o.OK() {
			errs = append(errs, fmt.Errorf("netplug.io: releasing %s of pod %s/%s: %w", e.Interface, e.PodNamespace, e.PodName, o.Failure))
			continue
		}
		klog.FromContext(ctx).Info("Released claim interface", "pod", e.PodNamespace+"/"+e.PodName, "interface", e.Interface)
	}
	return errors.Join(errs...)
}
