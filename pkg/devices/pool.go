package devices

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// State is a pool's devices as the plugin advertises them. A device stays known once found:
// gone from the host it is Unhealthy (so allocatable drops), unless netplug moved it into a pod
// (MarkInPod), where it is allocated and well.
type State struct {
	Pool Pool

	mu      sync.Mutex
	devices map[string]Device // by ID
	inPod   map[string]bool   // interface names netplug moved into a pod
	// reserved are the devices netplug hot-plugged into running pods, by ID (hotplug.go): the
	// kubelet sees them Unhealthy, so it never allocates them while they are out.
	reserved map[string]string
	// allocatedAt is when the kubelet last asked Allocate for a device.
	allocatedAt map[string]time.Time
	clock       func() time.Time // nil: time.Now
	changed     chan struct{}    // closed and replaced on every change
}

// NewState returns the empty state of pool p.
func NewState(p Pool) *State {
	return &State{Pool: p, devices: map[string]Device{}, inPod: map[string]bool{}, reserved: map[string]string{},
		allocatedAt: map[string]time.Time{}, changed: make(chan struct{})}
}

// Update takes one discovery's devices of the pool; it reports whether anything the kubelet
// sees (an ID or a health) changed.
func (s *State) Update(found []Device) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	changed := false
	for _, d := range found {
		seen[d.ID] = true
		if old, ok := s.devices[d.ID]; !ok || old != d {
			changed = changed || !ok || old.Healthy != d.Healthy
			s.devices[d.ID] = d
		}
	}
	for id, d := range s.devices {
		if seen[id] {
			continue
		}
		want := d.Interface != "" && s.inPod[d.Interface]
		if d.Healthy != want {
			d.Healthy = want
			s.devices[id] = d
			changed = true
		}
	}
	if changed {
		s.notify()
	}
	return changed
}

func (s *State) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Devices lists the pool's devices by ID as the kubelet is to see them (a hot-plugged one is
// Unhealthy), and a channel closed at the next change.
func (s *State) Devices() ([]Device, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Device, 0, len(s.devices))
	for id, d := range s.devices {
		if s.reserved[id] != "" {
			d.Healthy = false
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	return out, s.changed
}

// Lookup finds a device by its kubelet ID.
func (s *State) Lookup(id string) (Device, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[id]
	return d, ok
}

// MarkInPod records that the NIC whose host name is iface is in a pod (in) or back (!in): in a
// pod it is absent from the host and still healthy.
func (s *State) MarkInPod(iface string, in bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in {
		s.inPod[iface] = true
	} else {
		delete(s.inPod, iface)
	}
	for id, d := range s.devices {
		if d.Interface == iface && in && !d.Healthy {
			d.Healthy = true
			s.devices[id] = d
			s.notify()
		}
	}
}
