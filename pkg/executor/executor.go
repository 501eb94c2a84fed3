// Package executor carries out one attachment step at a time: the checkpoint record before the
// call, the Multus call, the record after it, the step's metric and timing, and the
// classification of its failure. It decides nothing: the controller plans the steps, hands them
// over one by one, and reads back what happened. It is the only code that calls Multus.
//
// The record protocol makes every step crash-safe: a record is written, in flight, before each
// ADD or DEL, and settled (Confirm) only once network-status holds the outcome. A record still in
// flight is an interface in an unknown state, which the next reconcile redoes, never assumes.
package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	cni100 "github.com/containernetworking/cni/pkg/types/100"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadutils "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/utils"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/metrics"
	"github.com/netplug/netplug/pkg/multus"
)

// Delegate plugs and unplugs one interface (multus.Client).
type Delegate interface {
	Add(ctx context.Context, r multus.Request) (*cni100.Result, error)
	Del(ctx context.Context, r multus.Request) error
}

// Records is where steps are recorded (checkpoint.Store).
type Records interface {
	Save(e checkpoint.Entry) error
	Delete(podUID, iface string) error
}

// Sandbox is the pod sandbox a step acts in.
type Sandbox struct {
	PodNamespace, PodName, PodUID string
	ID, NetNS                     string
}

// Op is the kind of a step.
type Op string

// The steps.
const (
	OpAdd     Op = "ADD"
	OpDel     Op = "DEL"
	OpAdopt   Op = "ADOPT"
	OpRelease Op = "RELEASE"
)

// Kind classifies a failed step.
type Kind string

// The kinds of failure, in the words events use.
const (
	// KindNameExists: Multus refused the ADD because the pod already has the name; nothing was
	// created and the record is gone. Only an edit fixes it.
	KindNameExists Kind = "InterfaceNameExists"
	// KindPodGone: the Multus daemon cannot find the pod object (a DEL after the pod went).
	KindPodGone Kind = "PodGone"
	// KindDaemonDown: the Multus socket is missing or refuses connections.
	KindDaemonDown Kind = "MultusUnavailable"
	// KindTimeout: the call ran out of time; its outcome is unknown.
	KindTimeout Kind = "Timeout"
	// KindCheckpoint: the record could not be written, so the call was not made.
	KindCheckpoint Kind = "CheckpointFailed"
	// KindPlugin: the CNI plugin (or the daemon) refused the request.
	KindPlugin Kind = "PluginFailed"
)

// Failure is a failed step.
type Failure struct {
	Kind      Kind
	Op        Op
	Interface string
	Err       error
}

func (f *Failure) Error() string { return fmt.Sprintf("%s %s: %v", f.Op, f.Interface, f.Err) }
func (f *Failure) Unwrap() error { return f.Err }

// Retriable reports whether trying the same step again later may succeed.
func (f *Failure) Retriable() bool { return f.Kind != KindNameExists }

// Outcome is what one step did.
type Outcome struct {
	Op        Op
	Interface string
	// Record is the interface's record as the step left it (the zero Entry once removed).
	Record checkpoint.Entry
	// Status is the interface's network-status entry after a successful ADD or ADOPT.
	Status *nadv1.NetworkStatus
	// Result is the CNI result of a successful ADD (a DRA claim's status.devices[].data).
	Result *cni100.Result
	// Failure is nil when the step succeeded.
	Failure *Failure
	// RestoreErr: a device-pool NIC came back to the host, but its addresses or MTU could not
	// be put back (the DEL itself succeeded).
	RestoreErr error
}

// OK reports whether the step succeeded.
func (o Outcome) OK() bool { return o.Failure == nil }

// Executor runs steps against a delegate and a record store.
type Executor struct {
	delegate Delegate
	records  Records
	host     devices.HostLinks
}

// WithHostLinks makes the executor put a device-pool NIC's host addresses and MTU back once a
// DEL returned it to the host (host-device drops addresses when it moves a link).
func (x *Executor) WithHostLinks(h devices.HostLinks) *Executor {
	x.host = h
	return x
}

// restore puts a returned NIC's host state back; only for records of device-pool NICs (moved in
// at start, or hot-plugged).
func (x *Executor) restore(rec checkpoint.Entry, out *Outcome) {
	if x.host == nil {
		return
	}
	if rec.Device != nil {
		host, err := hostStateOf(rec.Device)
		if err == nil && (len(host.Addresses) > 0 || host.MTU > 0) {
			err = x.host.Restore(rec.Device.Interface, host)
		}
		out.RestoreErr = err
		return
	}
	if rec.Origin != checkpoint.OriginDevice {
		return
	}
	iface, host, err := devices.ParseHostDeviceConfig(rec.Config)
	if err == nil && (len(host.Addresses) > 0 || host.MTU > 0) {
		err = x.host.Restore(iface, host)
	}
	out.RestoreErr = err
}

// New returns an Executor.
func New(d Delegate, r Records) *Executor { return &Executor{delegate: d, records: r} }

// Add plugs a into sb with config: record in flight, then ADD. The record stays in flight until
// Confirm: if the ADD fails or netplug dies before network-status holds the result, the next
// reconcile finds the record uncertain and replugs instead of trusting an older entry.
func (x *Executor) Add(ctx context.Context, sb Sandbox, a attachment.Attachment, config []byte) Outcome {
	return x.AddDevice(ctx, sb, a, config, nil)
}

// AddDevice is Add for an interface that takes a pool device (dev, already written into
// config): the record names the device before the ADD, so a crash at any point leaves it known.
func (x *Executor) AddDevice(ctx context.Context, sb Sandbox, a attachment.Attachment, config []byte, dev *checkpoint.Device) Outcome {
	rec := newRecord(sb, a, config)
	rec.InFlight, rec.Device = checkpoint.InFlightAdd, dev
	out := Outcome{Op: OpAdd, Interface: a.Interface, Record: rec}
	if err := x.records.Save(rec); err != nil {
		out.Failure = &Failure{Kind: KindCheckpoint, Op: OpAdd, Interface: a.Interface, Err: err}
		return out
	}
	start := time.Now()
	result, err := x.delegate.Add(ctx, requestFor(rec))
	observe(OpAdd, start, err)
	if err != nil {
		out.Failure = failure(OpAdd, a.Interface, err)
		if out.Failure.Kind == KindNameExists {
			// Multus checks the name before any plugin runs: nothing was created, so nothing
			// may be DELeted for it (a DEL by that name would destroy the pod's own link).
			if err := x.records.Delete(rec.PodUID, rec.Interface); err != nil {
				klog.FromContext(ctx).Error(err, "Removing the record of an ADD that created nothing", "interface", a.Interface)
			}
			out.Record = checkpoint.Entry{}
		}
		return out
	}
	out.Status, out.Result = statusFor(result, a), result
	return out
}

// Adopt records an interface Multus attached at pod creation for a selection element, without
// a call, so that netplug may DEL it (with config) once the selection drops it.
func (x *Executor) Adopt(sb Sandbox, a attachment.Attachment, config []byte) Outcome {
	rec := newRecord(sb, a, config)
	rec.Adopted = true
	out := Outcome{Op: OpAdopt, Interface: a.Interface, Record: rec}
	if err := x.records.Save(rec); err != nil {
		out.Failure = &Failure{Kind: KindCheckpoint, Op: OpAdopt, Interface: a.Interface, Err: err}
	}
	return out
}

// Del unplugs the interface of rec: record marked in flight, then DEL with the record's sandbox,
// netns and config. A DEL that fails or is cut short may have removed the link already, so until
// it succeeds and is confirmed the interface counts as unknown.
func (x *Executor) Del(ctx context.Context, rec checkpoint.Entry) Outcome {
	rec.InFlight, rec.Adopted = checkpoint.InFlightDel, false
	out := Outcome{Op: OpDel, Interface: rec.Interface, Record: rec}
	if err := x.records.Save(rec); err != nil {
		out.Failure = &Failure{Kind: KindCheckpoint, Op: OpDel, Interface: rec.Interface, Err: err}
		return out
	}
	gone, err := x.del(ctx, rec)
	if err != nil {
		out.Failure = failure(OpDel, rec.Interface, err)
		return out
	}
	if !gone {
		x.restore(rec, &out)
	}
	return out
}

// del sends the DEL of rec. A DEL that finds the link already out of the pod (host-device's
// "Link not found": its peer was deleted, or it left with a netns) has nothing left to undo, so
// it counts as done; gone says so, and there is nothing on the host to restore.
func (x *Executor) del(ctx context.Context, rec checkpoint.Entry) (gone bool, err error) {
	start := time.Now()
	err = x.delegate.Del(ctx, requestFor(rec))
	observe(OpDel, start, err)
	if errors.Is(err, multus.ErrDeviceGone) {
		klog.FromContext(ctx).Info("DEL found the interface already gone from the pod; nothing left to undo",
			"pod", rec.PodNamespace+"/"+rec.PodName, "interface", rec.Interface, "err", err)
		return true, nil
	}
	return false, err
}

// Release DELs an interface whose pod or sandbox is gone or stopped, and removes its record
// once the DEL succeeded. An adopted record is only dropped: Multus tears down what it attached
// at pod creation itself.
func (x *Executor) Release(ctx context.Context, rec checkpoint.Entry) Outcome {
	out := Outcome{Op: OpRelease, Interface: rec.Interface, Record: rec}
	if !rec.Adopted {
		gone, err := x.del(ctx, rec)
		if err != nil {
			out.Failure = failure(OpRelease, rec.Interface, err)
			return out
		}
		if !gone {
			x.restore(rec, &out)
		}
	}
	if err := x.records.Delete(rec.PodUID, rec.Interface); err != nil {
		out.Failure = &Failure{Kind: KindCheckpoint, Op: OpRelease, Interface: rec.Interface, Err: err}
		return out
	}
	out.Record = checkpoint.Entry{}
	return out
}

// Confirm settles the records of a reconcile's outcomes once network-status holds them: the
// record of an interface whose last step was a successful DEL is removed, that of a successful
// ADD is no longer in flight. Failed steps keep their records in flight. It returns the
// outcomes with their records as they now stand, and the records it could not settle (those
// interfaces stay uncertain, and the next reconcile redoes them).
func (x *Executor) Confirm(outcomes []Outcome) ([]Outcome, error) {
	last := map[string]int{}
	for i, o := range outcomes {
		last[o.Interface] = i
	}
	settled := make([]Outcome, len(outcomes))
	copy(settled, outcomes)
	var errs []error
	for i, o := range outcomes {
		if last[o.Interface] != i || !o.OK() {
			continue
		}
		switch o.Op {
		case OpDel:
			if err := x.records.Delete(o.Record.PodUID, o.Interface); err != nil {
				errs = append(errs, err)
				continue
			}
			settled[i].Record = checkpoint.Entry{}
		case OpAdd:
			rec := o.Record
			rec.InFlight = ""
			if err := x.records.Save(rec); err != nil {
				errs = append(errs, err)
				continue
			}
			settled[i].Record = rec
		}
	}
	return settled, errors.Join(errs...)
}

// DeviceRecord is the on-disk form of a reservation.
func DeviceRecord(r devices.Reservation) *checkpoint.Device {
	d := &checkpoint.Device{Pool: r.Pool, ID: r.Device.ID, Interface: r.Device.Interface, PCI: r.Device.PCI, HostMTU: r.Host.MTU}
	for _, a := range r.Host.Addresses {
		d.HostAddresses = append(d.HostAddresses, a.String())
	}
	return d
}

func hostStateOf(d *checkpoint.Device) (devices.HostState, error) {
	host := devices.HostState{MTU: d.HostMTU}
	for _, s := range d.HostAddresses {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return host, fmt.Errorf("host address %q of %s in the checkpoint: %w", s, d.Interface, err)
		}
		host.Addresses = append(host.Addresses, p)
	}
	return host, nil
}

func newRecord(sb Sandbox, a attachment.Attachment, config []byte) checkpoint.Entry {
	return checkpoint.Entry{
		PodNamespace: sb.PodNamespace, PodName: sb.PodName, PodUID: sb.PodUID,
		SandboxID: sb.ID, NetNS: sb.NetNS,
		Namespace: a.Namespace, Network: a.Network, Interface: a.Interface,
		Config: json.RawMessage(config), Attributes: checkpoint.AttributesFrom(a.Attributes),
		Origin: string(a.Source),
	}
}

// RecordFor is the record of an interface netplug holds none for (Multus attached it, and the
// selection now asks for it otherwise): what a DEL of it needs.
func RecordFor(sb Sandbox, a attachment.Attachment, config []byte) checkpoint.Entry {
	rec := newRecord(sb, a, config)
	rec.Attributes = checkpoint.Attributes{}
	return rec
}

func requestFor(e checkpoint.Entry) multus.Request {
	return multus.Request{
		SandboxID: e.SandboxID, NetNS: e.NetNS, IfName: e.Interface,
		PodNamespace: e.PodNamespace, PodName: e.PodName, PodUID: e.PodUID,
		Config: e.Config, IPs: e.Attributes.IPs, MAC: e.Attributes.MAC, CNIArgs: e.Attributes.CNIArgs,
	}
}

// statusFor turns the CNI result into a's network-status entry, as Multus writes it.
func statusFor(result *cni100.Result, a attachment.Attachment) *nadv1.NetworkStatus {
	st := &nadv1.NetworkStatus{Name: a.NetworkName(), Interface: a.Interface}
	statuses, err := nadutils.CreateNetworkStatuses(result, a.NetworkName(), false, nil)
	if err != nil {
		return st
	}
	for _, s := range statuses {
		if s.Interface == a.Interface {
			return s
		}
	}
	return st
}

func failure(op Op, iface string, err error) *Failure {
	kind := KindPlugin
	switch {
	case op == OpAdd && errors.Is(err, multus.ErrInterfaceExists):
		kind = KindNameExists
	case errors.Is(err, multus.ErrPodNotFound):
		kind = KindPodGone
	case errors.Is(err, multus.ErrDaemonUnavailable):
		kind = KindDaemonDown
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		kind = KindTimeout
	}
	return &Failure{Kind: kind, Op: op, Interface: iface, Err: err}
}

// observe records one Multus call in netplug_plug_duration_seconds (operation add|del).
func observe(op Op, start time.Time, err error) {
	operation := metrics.OperationDel
	if op == OpAdd {
		operation = metrics.OperationAdd
	}
	result := metrics.ResultSuccess
	if err != nil {
		result = metrics.ResultError
	}
	metrics.PlugDuration.WithLabelValues(operation, result).Observe(time.Since(start).Seconds())
}
