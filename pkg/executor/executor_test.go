package executor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	cni100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/multus"
)

// records is an in-memory record store that can be made to fail.
type records struct {
	saved  map[string]checkpoint.Entry
	log    []string
	failOn string // "save" or "delete"
}

func newRecords() *records { return &records{saved: map[string]checkpoint.Entry{}} }

func (r *records) Save(e checkpoint.Entry) error {
	r.log = append(r.log, fmt.Sprintf("save %s %s", e.Interface, e.InFlight))
	if r.failOn == "save" {
		return errors.New("disk full")
	}
	r.saved[e.Interface] = e
	return nil
}

func (r *records) Delete(_, iface string) error {
	r.log = append(r.log, "delete "+iface)
	if r.failOn == "delete" {
		return errors.New("read-only")
	}
	delete(r.saved, iface)
	return nil
}

// delegate answers every call with err (nil: success) and records the calls.
type delegate struct {
	err   error
	calls []string
}

func (d *delegate) Add(_ context.Context, r multus.Request) (*cni100.Result, error) {
	d.calls = append(d.calls, "ADD "+r.IfName)
	if d.err != nil {
		return nil, d.err
	}
	idx := 0
	return &cni100.Result{CNIVersion: "1.0.0",
		Interfaces: []*cni100.Interface{{Name: r.IfName, Mac: "02:00:00:00:00:07", Sandbox: r.NetNS}},
		IPs:        []*cni100.IPConfig{{Interface: &idx, Address: net.IPNet{IP: net.IPv4(10, 0, 0, 7), Mask: net.CIDRMask(24, 32)}}},
	}, nil
}

func (d *delegate) Del(_ context.Context, r multus.Request) error {
	d.calls = append(d.calls, "DEL "+r.IfName)
	return d.err
}

var sb = Sandbox{PodNamespace: "ns", PodName: "p", PodUID: "uid-p", ID: "sb1", NetNS: "/run/netns/p"}

func att(iface string) attachment.Attachment {
	return attachment.Attachment{Namespace: "ns", Network: "br", Interface: iface, Source: attachment.SourceAnnotation,
		Attributes: attachment.Attributes{IPs: []string{"10.0.0.7/24"}}}
}

func TestAdd(t *testing.T) {
	exists := &multus.DaemonError{Message: "validateIfName: interface name net1 already exists"}
	tests := []struct {
		name       string
		callErr    error
		failOn     string
		wantKind   Kind
		wantRecord string // in-flight state of the stored record, "-" for none
		wantCalls  int
	}{
		{name: "success leaves the record in flight until Confirm", wantRecord: checkpoint.InFlightAdd, wantCalls: 1},
		{name: "a name that exists created nothing: no record", callErr: exists, wantKind: KindNameExists, wantRecord: "-", wantCalls: 1},
		{name: "a plugin failure keeps the record in flight", callErr: errors.New("bridge: boom"), wantKind: KindPlugin, wantRecord: checkpoint.InFlightAdd, wantCalls: 1},
		{name: "a timeout keeps the record in flight", callErr: fmt.Errorf("multus ADD: %w", context.DeadlineExceeded), wantKind: KindTimeout, wantRecord: checkpoint.InFlightAdd, wantCalls: 1},
		{name: "daemon down", callErr: fmt.Errorf("x: %w", multus.ErrDaemonUnavailable), wantKind: KindDaemonDown, wantRecord: checkpoint.InFlightAdd, wantCalls: 1},
		{name: "no record, no call", failOn: "save", wantKind: KindCheckpoint, wantRecord: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, d := newRecords(), &delegate{err: tt.callErr}
			rec.failOn = tt.failOn
			o := New(d, rec).Add(context.Background(), sb, att("net1"), []byte(`{"type":"bridge"}`))
			if len(d.calls) != tt.wantCalls {
				t.Fatalf("calls %v", d.calls)
			}
			if tt.wantKind == "" {
				if !o.OK() || o.Status == nil || o.Status.Name != "ns/br" || o.Status.Mac != "02:00:00:00:00:07" || len(o.Status.IPs) != 1 {
					t.Fatalf("outcome %+v", o)
				}
			} else if o.OK() || o.Failure.Kind != tt.wantKind || o.Failure.Error() == "" || o.Failure.Unwrap() == nil {
				t.Fatalf("failure %+v, want %s", o.Failure, tt.wantKind)
			}
			stored, ok := rec.saved["net1"]
			switch {
			case tt.wantRecord == "-" && ok:
				t.Fatalf("record left: %+v", stored)
			case tt.wantRecord != "-" && (!ok || stored.InFlight != tt.wantRecord || stored.Origin != "annotation" || stored.Attributes.IPs[0] != "10.0.0.7/24"):
				t.Fatalf("record %+v, want in flight %q", stored, tt.wantRecord)
			}
			if o.Failure != nil && o.Failure.Retriable() == (tt.wantKind == KindNameExists) {
				t.Fatalf("Retriable() = %v for %s", o.Failure.Retriable(), tt.wantKind)
			}
		})
	}
}

func TestDelAdoptReleaseConfirm(t *testing.T) {
	rec, d := newRecords(), &delegate{}
	x := New(d, rec)
	adopted := x.Adopt(sb, att("net1"), []byte(`{}`))
	if !adopted.OK() || !rec.saved["net1"].Adopted || len(d.calls) != 0 {
		t.Fatalf("adopt %+v, calls %v", adopted, d.calls)
	}
	plugged := x.Add(context.Background(), sb, att("net2"), []byte(`{}`))
	del := x.Del(context.Background(), rec.saved["net1"])
	if !del.OK() || rec.saved["net1"].InFlight != checkpoint.InFlightDel || rec.saved["net1"].Adopted {
		t.Fatalf("del %+v, record %+v", del, rec.saved["net1"])
	}
	settled, err := x.Confirm([]Outcome{adopted, plugged, del})
	if err != nil || len(settled) != 3 {
		t.Fatal(err)
	}
	if _, ok := rec.saved["net1"]; ok {
		t.Fatal("a confirmed DEL keeps its record")
	}
	if rec.saved["net2"].InFlight != "" || settled[1].Record.InFlight != "" {
		t.Fatalf("a confirmed ADD is still in flight: %+v", rec.saved["net2"])
	}
	// Release: DEL and record gone; an adopted record goes without a call.
	d.calls = nil
	if o := x.Release(context.Background(), rec.saved["net2"]); !o.OK() || o.Record.Interface != "" {
		t.Fatalf("release %+v", o)
	}
	x.Adopt(sb, att("net3"), nil)
	if o := x.Release(context.Background(), rec.saved["net3"]); !o.OK() || len(d.calls) != 1 {
		t.Fatalf("release of an adopted record %+v, calls %v", o, d.calls)
	}
	if len(rec.saved) != 0 {
		t.Fatalf("records left %v", rec.saved)
	}
}

func TestFailuresKeepRecords(t *testing.T) {
	gone := &multus.DaemonError{Message: "pod not found during Multus GetPod"}
	rec, d := newRecords(), &delegate{err: gone}
	x := New(d, rec)
	entry := checkpoint.Entry{PodUID: "uid-p", Interface: "net1", SandboxID: "sb0"}
	if o := x.Release(context.Background(), entry); o.OK() || o.Failure.Kind != KindPodGone || o.Record.Interface != "net1" {
		t.Fatalf("release %+v", o)
	}
	if o := x.Del(context.Background(), entry); o.OK() || o.Failure.Kind != KindPodGone {
		t.Fatalf("del %+v", o)
	}
	d.err = nil
	rec.failOn = "delete"
	if o := x.Release(context.Background(), entry); o.OK() || o.Failure.Kind != KindCheckpoint {
		t.Fatalf("release with a failing store %+v", o)
	}
	del := x.Del(context.Background(), entry)
	if _, err := x.Confirm([]Outcome{del}); err == nil {
		t.Fatal("a record that cannot be removed must be reported")
	}
	rec.failOn = "save"
	if o := x.Del(context.Background(), entry); o.OK() || o.Failure.Kind != KindCheckpoint {
		t.Fatalf("del with a failing store %+v", o)
	}
	if o := x.Adopt(sb, att("net4"), nil); o.OK() || o.Failure.Kind != KindCheckpoint {
		t.Fatalf("adopt with a failing store %+v", o)
	}
	if _, err := x.Confirm([]Outcome{{Op: OpAdd, Interface: "net5", Record: checkpoint.Entry{Interface: "net5"}}}); err == nil {
		t.Fatal("an ADD record that cannot be settled must be reported")
	}
	if r := RecordFor(sb, att("net6"), []byte(`{}`)); len(r.Attributes.IPs) != 0 || r.Interface != "net6" {
		t.Fatalf("RecordFor %+v", r)
	}
}

// hostLinks records what is restored on the host.
type hostLinks struct{ restored []string }

func (h *hostLinks) State(string) (devices.HostState, error) { return devices.HostState{}, nil }
func (h *hostLinks) Restore(name string, s devices.HostState) error {
	h.restored = append(h.restored, fmt.Sprintf("%s %v mtu %d", name, s.Addresses, s.MTU))
	return nil
}

// A hot-plugged device's record names it before the ADD; its DEL restores the link's host
// addresses from the record; a DEL that finds the link already gone (host-device's "Link not
// found") is done, with nothing to restore.
func TestDeviceRecords(t *testing.T) {
	rec, d, host := newRecords(), &delegate{}, &hostLinks{}
	x := New(d, rec).WithHostLinks(host)
	dev := DeviceRecord(devices.Reservation{Pool: "netplug.io/veth", Device: devices.Device{ID: "npdev1", Interface: "npdev1"},
		Host: devices.HostState{Addresses: []netip.Prefix{netip.MustParsePrefix("10.1.0.2/24")}, MTU: 1400}})
	o := x.AddDevice(context.Background(), sb, att("net1"), []byte(`{"device":"npdev1"}`), dev)
	if !o.OK() || rec.saved["net1"].Device == nil || rec.saved["net1"].Device.ID != "npdev1" || rec.log[0] != "save net1 ADD" {
		t.Fatalf("add %+v, records %v", o, rec.log)
	}
	if o := x.Del(context.Background(), rec.saved["net1"]); !o.OK() || o.RestoreErr != nil ||
		len(host.restored) != 1 || host.restored[0] != "npdev1 [10.1.0.2/24] mtu 1400" {
		t.Fatalf("del %+v, restored %v", o, host.restored)
	}
	d.err = &multus.DaemonError{Message: `DelegateDel: error invoking DelegateDel - "host-device": error in getting result from DelNetwork: failed to find "net1": Link not found`}
	if o := x.Release(context.Background(), rec.saved["net1"]); !o.OK() || o.Record.Interface != "" || len(host.restored) != 1 {
		t.Fatalf("release of a gone link %+v, restored %v", o, host.restored)
	}
	// A record whose host state cannot be read back still DELs; the restore reports why.
	d.err = nil
	bad := *dev
	bad.HostAddresses = []string{"not-a-prefix"}
	if o := x.Del(context.Background(), checkpoint.Entry{PodUID: "uid-p", Interface: "net2", Device: &bad}); !o.OK() || o.RestoreErr == nil {
		t.Fatalf("del with a bad host address %+v", o)
	}
}
