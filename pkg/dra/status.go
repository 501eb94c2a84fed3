package dra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	cni100 "github.com/containernetworking/cni/pkg/types/100"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	resourcev1 "k8s.io/client-go/kubernetes/typed/resource/v1"
	"k8s.io/client-go/util/retry"
)

// ConditionReady is the condition of a claim device that is plugged into its pod.
const ConditionReady = "Ready"

// DeviceResult is the outcome of plugging one device of a claim.
type DeviceResult struct {
	Device PreparedDevice
	// Result is the CNI result (nil when Err is set).
	Result *cni100.Result
	// Err is why the device could not be plugged.
	Err error
}

// DeviceStatus is the status.devices[] entry of one device: the Ready condition, the CNI
// result as data, and networkData (interface name, IPs as CIDRs, MAC) from the result.
func DeviceStatus(r DeviceResult, now time.Time) resourceapi.AllocatedDeviceStatus {
	s := resourceapi.AllocatedDeviceStatus{Driver: DriverName, Pool: r.Device.Pool, Device: r.Device.Device}
	cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Plugged",
		Message: fmt.Sprintf("interface %s is in the pod's network namespace", r.Device.Attachment.Interface), LastTransitionTime: metav1.NewTime(now)}
	if r.Err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "PlugFailed", r.Err.Error()
	}
	s.Conditions = []metav1.Condition{cond}
	if r.Result == nil {
		return s
	}
	if data, err := json.Marshal(r.Result); err == nil {
		s.Data = &runtime.RawExtension{Raw: data}
	}
	nd := &resourceapi.NetworkDeviceData{InterfaceName: r.Device.Attachment.Interface}
	index := -1
	for i, iface := range r.Result.Interfaces {
		if iface.Name == r.Device.Attachment.Interface && iface.Sandbox != "" {
			index = i
			if hw, err := net.ParseMAC(iface.Mac); err == nil {
				nd.HardwareAddress = hw.String()
			}
		}
	}
	for _, ip := range r.Result.IPs {
		if ip.Interface == nil || *ip.Interface == index || index < 0 {
			nd.IPs = append(nd.IPs, ip.Address.String())
		}
	}
	s.NetworkData = nd
	return s
}

// StatusWriter writes a claim's status.devices entries, conflict-safe: each write names the
// resourceVersion it read and is retried on a fresh claim when another writer got there first.
// Entries of other drivers and devices are kept.
type StatusWriter struct {
	client  resourcev1.ResourceV1Interface
	timeout time.Duration
	now     func() time.Time
}

// NewStatusWriter returns a StatusWriter whose every API call is bounded by timeout.
func NewStatusWriter(client resourcev1.ResourceV1Interface, timeout time.Duration) *StatusWriter {
	return &StatusWriter{client: client, timeout: timeout, now: time.Now}
}

// Write sets the status of the claim's devices in results.
func (w *StatusWriter) Write(ctx context.Context, c PreparedClaim, results []DeviceResult) error {
	statuses := make([]resourceapi.AllocatedDeviceStatus, 0, len(results))
	for _, r := range results {
		statuses = append(statuses, DeviceStatus(r, w.now()))
	}
	return w.apply(ctx, c, func(devices []resourceapi.AllocatedDeviceStatus) []resourceapi.AllocatedDeviceStatus {
		for _, s := range statuses {
			i := slices.IndexFunc(devices, func(d resourceapi.AllocatedDeviceStatus) bool { return sameDevice(d, s) })
			if i >= 0 {
				s.Conditions = keepTransitionTime(devices[i].Conditions, s.Conditions)
				devices[i] = s
			} else {
				devices = append(devices, s)
			}
		}
		return devices
	})
}

// Clear removes the status of the claim's devices (they were unplugged). A claim that is gone,
// or is another claim by now (same name, another UID), has nothing of this one left to clear.
func (w *StatusWriter) Clear(ctx context.Context, c PreparedClaim) error {
	err := w.apply(ctx, c, func(devices []resourceapi.AllocatedDeviceStatus) []resourceapi.AllocatedDeviceStatus {
		return slices.DeleteFunc(devices, func(d resourceapi.AllocatedDeviceStatus) bool {
			return slices.ContainsFunc(c.Devices, func(p PreparedDevice) bool {
				return d.Driver == DriverName && d.Pool == p.Pool && d.Device == p.Device
			})
		})
	})
	if apierrors.IsNotFound(err) || errors.Is(err, errOtherClaim) {
		return nil
	}
	return err
}

// errOtherClaim: the claim of that name has another UID than the one prepared.
var errOtherClaim = errors.New("is another claim")

func (w *StatusWriter) apply(ctx context.Context, c PreparedClaim, edit func([]resourceapi.AllocatedDeviceStatus) []resourceapi.AllocatedDeviceStatus) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		getCtx, cancel := context.WithTimeout(ctx, w.timeout)
		claim, err := w.client.ResourceClaims(c.Namespace).Get(getCtx, c.Name, metav1.GetOptions{})
		cancel()
		if err != nil {
			return fmt.Errorf("reading claim %s/%s: %w", c.Namespace, c.Name, err)
		}
		if claim.UID != types.UID(c.UID) {
			return fmt.Errorf("claim %s/%s %w (UID %s, prepared %s)", c.Namespace, c.Name, errOtherClaim, claim.UID, c.UID)
		}
		before := claim.Status.Devices
		claim = claim.DeepCopy()
		claim.Status.Devices = edit(slices.Clone(before))
		if equalDevices(before, claim.Status.Devices) {
			return nil
		}
		updCtx, cancel := context.WithTimeout(ctx, w.timeout)
		defer cancel()
		_, err = w.client.ResourceClaims(c.Namespace).UpdateStatus(updCtx, claim, metav1.UpdateOptions{})
		return err
	})
}

func sameDevice(a, b resourceapi.AllocatedDeviceStatus) bool {
	return a.Driver == b.Driver && a.Pool == b.Pool && a.Device == b.Device && ptrEq(a.ShareID, b.ShareID)
}

func ptrEq(a, b *string) bool { return (a == nil && b == nil) || (a != nil && b != nil && *a == *b) }

// keepTransitionTime keeps a condition's lastTransitionTime while its status does not change.
func keepTransitionTime(old, cur []metav1.Condition) []metav1.Condition {
	for i, c := range cur {
		for _, o := range old {
			if o.Type == c.Type && o.Status == c.Status {
				cur[i].LastTransitionTime = o.LastTransitionTime
			}
		}
	}
	return cur
}

func equalDevices(a, b []resourceapi.AllocatedDeviceStatus) bool {
	x, errX := json.Marshal(a)
	y, errY := json.Marshal(b)
	return errX == nil && errY == nil && string(x) == string(y)
}
