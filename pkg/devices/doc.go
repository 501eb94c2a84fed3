// Package devices is netplug's device pools: host network devices and character devices that
// netplug advertises to the kubelet as extended resources (one kubelet device plugin per pool),
// whose health it watches, and whose allocation to pods it learns from the kubelet's
// PodResources API.
//
// One job per file:
//
//	config.go        pool configuration and its validation (the ConfigMap key "devicePools")
//	sysfs.go         what the node has: links, PCI addresses, drivers, the default route (sysfs, procfs)
//	match.go         which discovered device belongs to which pool, and which are never matched
//	pool.go          a pool's devices and their health, with change notification
//	watch.go         the poll loop that rediscovers devices and updates the pools' health
//	plugin.go        the kubelet device plugin of one pool: gRPC server, registration, re-registration
//	podresources.go  which pod holds which devices (kubelet PodResources v1)
//	hostdevice.go    the host-device CNI config netplug generates for a NIC without a NAD
//	hostlink.go      a host link's addresses and MTU, read before a move and restored after it
//	metrics.go       devices per pool by state
package devices
