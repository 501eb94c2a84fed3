package devices

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// ErrPoolExhausted: the pool has no device that is healthy, on the host, and held by nobody.
var ErrPoolExhausted = errors.New("no free device")

// allocateGrace is how long a device the kubelet asked Allocate for counts as the kubelet's
// before PodResources lists it: the kubelet allocates at admission and PodResources follows.
const allocateGrace = 2 * time.Minute

// Reservation is a pool device netplug hands to a running pod (hot-plug): picked free, marked
// out of the kubelet's reach (Unhealthy in ListAndWatch) until Unreserve, and recorded in the
// interface's checkpoint so that a restart knows it.
type Reservation struct {
	Pool   string // resource name
	Device Device
	// Host is what the link had on the host, put back when it returns.
	Host HostState
}

// Reserve picks the first free device of the pool for owner: healthy, not reserved, not
// moved into a pod at start, not allocated by the kubelet (allocated, per PodResources) and
// not just handed to it by Allocate. The pick is atomic with Allocate: a reserved device is
// refused to the kubelet, and a device the kubelet was given is never picked.
func (s *State) Reserve(owner string, allocated map[string]bool) (Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(s.devices)) {
		d := s.devices[id]
		if !d.Healthy || d.Interface == "" || s.reserved[id] != "" || s.inPod[d.Interface] || allocated[id] ||
			s.now().Sub(s.allocatedAt[id]) < allocateGrace {
			continue
		}
		s.reserved[id] = owner
		s.notify()
		return d, nil
	}
	return Device{}, fmt.Errorf("pool %s has %w", s.Pool.ResourceName, ErrPoolExhausted)
}

// Restore marks device id as held by owner: a restart rebuilds the reservations from the
// checkpoints before anything is picked. The device may be in a pod, so not on the host.
func (s *State) Restore(id, owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reserved[id] != owner {
		s.reserved[id] = owner
		s.notify()
	}
}

// Unreserve gives device id back to the pool; it reports whether it was reserved.
func (s *State) Unreserve(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reserved[id] == "" {
		return false
	}
	delete(s.reserved, id)
	s.notify()
	return true
}

// Reserved counts the pool's devices netplug has handed to running pods.
func (s *State) Reserved() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reserved)
}

// allocatedByKubelet notes the devices the kubelet asked Allocate for, and refuses any that is
// reserved (a hot-plugged device is Unhealthy, so the kubelet asks for one only in a race).
func (s *State) allocatedByKubelet(ids []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if owner := s.reserved[id]; owner != "" {
			return fmt.Errorf("device %s of pool %s is hot-plugged into a running pod (%s)", id, s.Pool.ResourceName, owner)
		}
	}
	for _, id := range ids {
		s.allocatedAt[id] = s.now()
	}
	return nil
}

func (s *State) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}

// NICPool reports whether resource names a NIC pool of this node.
func (s *Source) NICPool(resource string) bool {
	st, ok := s.States[resource]
	return ok && st.Pool.Kind() == KindNIC
}

// Reserve picks a free NIC of pool resource for owner (see State.Reserve), with its host
// addresses and MTU. Without an answer from PodResources nothing is picked: a device the
// kubelet gave a pod must never be given twice.
func (s *Source) Reserve(ctx context.Context, resource, owner string) (Reservation, error) {
	st, ok := s.States[resource]
	if !ok || st.Pool.Kind() != KindNIC {
		return Reservation{}, fmt.Errorf("%s is not a NIC pool of this node", resource)
	}
	var allocated map[string]bool
	if s.Allocations != nil {
		all, err := s.Allocations.Allocated(ctx)
		if err != nil {
			return Reservation{}, fmt.Errorf("asking the kubelet which devices of %s it allocated: %w", resource, err)
		}
		allocated = all[resource]
	}
	d, err := st.Reserve(owner, allocated)
	if err != nil {
		return Reservation{}, err
	}
	r := Reservation{Pool: resource, Device: d}
	if s.Host != nil {
		if r.Host, err = s.Host.State(d.Interface); err != nil {
			st.Unreserve(d.ID)
			return Reservation{}, fmt.Errorf("reading %s on the host: %w", d.Interface, err)
		}
	}
	return r, nil
}

// Restore marks a device of a checkpoint as held (see State.Restore).
func (s *Source) Restore(resource, id, owner string) {
	if st, ok := s.States[resource]; ok {
		st.Restore(id, owner)
	}
}

// Unreserve gives a device back to its pool, and tells OnFree.
func (s *Source) Unreserve(resource, id string) {
	if st, ok := s.States[resource]; ok && st.Unreserve(id) {
		s.Freed(resource)
	}
}

// InjectDevice writes a reserved device into a NAD's CNI config, as Multus does for a device
// the kubelet allocated (it never does for /delegate): "device" names the link (host-device
// finds it by name first), and a PCI NIC also gets "deviceID" and "pciBusID". A config list
// gets them in each plugin, as Multus does.
func InjectDevice(config []byte, d Device) ([]byte, error) {
	var conf map[string]any
	if err := json.Unmarshal(config, &conf); err != nil {
		return nil, fmt.Errorf("the network's CNI config is not a JSON object: %w", err)
	}
	set := func(m map[string]any) {
		m["device"] = d.Interface
		if d.PCI != "" {
			m["deviceID"], m["pciBusID"] = d.PCI, d.PCI
		}
	}
	if plugins, ok := conf["plugins"].([]any); ok {
		for i, p := range plugins {
			m, ok := p.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("plugin %d of the network's CNI config list is not an object", i)
			}
			set(m)
		}
	} else {
		set(conf)
	}
	return json.Marshal(conf)
}

// Owner names the holder of a hot-plugged device in logs and errors.
func Owner(podNamespace, podName, iface string) string {
	return podNamespace + "/" + podName + ":" + iface
}
