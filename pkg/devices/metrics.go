package devices

import "github.com/netplug/netplug/pkg/metrics"

// observePool sets the pool's device counts by state: unhealthy, allocated (healthy and held by
// a pod, per the kubelet) and free.
func observePool(resource string, devs []Device, allocated map[string]bool) {
	var free, held, unhealthy int
	for _, d := range devs {
		switch {
		case !d.Healthy:
			unhealthy++
		case allocated[d.ID]:
			held++
		default:
			free++
		}
	}
	metrics.PoolDevices.WithLabelValues(resource, metrics.DeviceFree).Set(float64(free))
	metrics.PoolDevices.WithLabelValues(resource, metrics.DeviceAllocated).Set(float64(held))
	metrics.PoolDevices.WithLabelValues(resource, metrics.DeviceUnhealthy).Set(float64(unhealthy))
}
