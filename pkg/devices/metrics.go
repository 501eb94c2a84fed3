package devices

import "github.com/netplug/netplug/pkg/metrics"

// poolCounts are a pool's devices by state.
type poolCounts struct{ free, held, unhealthy, hotplugged int }

// counts sorts the pool's devices by state: hot-plugged by netplug, unhealthy, allocated
// (healthy and held by a pod, per the kubelet, or moved in at its start) and free.
func (s *State) counts(allocated map[string]bool) poolCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c poolCounts
	c.hotplugged = len(s.reserved)
	for id, d := range s.devices {
		switch {
		case s.reserved[id] != "":
		case !d.Healthy:
			c.unhealthy++
		case allocated[id] || s.inPod[d.Interface]:
			c.held++
		default:
			c.free++
		}
	}
	return c
}

// observePool sets the pool's device counts by state.
func observePool(resource string, c poolCounts) {
	metrics.PoolDevices.WithLabelValues(resource, metrics.DeviceFree).Set(float64(c.free))
	metrics.PoolDevices.WithLabelValues(resource, metrics.DeviceAllocated).Set(float64(c.held))
	metrics.PoolDevices.WithLabelValues(resource, metrics.DeviceUnhealthy).Set(float64(c.unhealthy))
	metrics.PoolDevices.WithLabelValues(resource, metrics.DeviceHotplugged).Set(float64(c.hotplugged))
}
