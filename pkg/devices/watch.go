package devices

import (
	"context"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// Allocations says which device IDs of each resource the kubelet has allocated to pods
// (PodResources); it only feeds the metrics.
type Allocations interface {
	Allocated(ctx context.Context) (map[string]map[string]bool, error)
}

// Watcher rediscovers the node's devices on every tick and updates the pools: the poll loop of
// discovery and health.
type Watcher struct {
	Sysfs  Sysfs
	States []*State
	// Allocations, if set, splits the healthy devices into free and allocated in the metrics.
	Allocations Allocations
	// Tick paces the loop (a time.Ticker's channel; a test's own channel).
	Tick <-chan time.Time
	// OnFree, if set, is told of each pool with more free devices than at the last scan (one
	// came back healthy, or the kubelet released one): hot-plugs waiting for one retry.
	OnFree func(resource string)

	lastFree map[string]int
}

// Scan runs one discovery and updates every pool. It returns the links excluded from pools.
func (w *Watcher) Scan(ctx context.Context) ([]Excluded, error) {
	pools := make([]Pool, len(w.States))
	for i, s := range w.States {
		pools[i] = s.Pool
	}
	links, err := w.Sysfs.Links(namesOfInterest(pools))
	if err != nil {
		return nil, err
	}
	routes, err := w.Sysfs.DefaultRouteLinks()
	if err != nil {
		return nil, err
	}
	found, excluded := Match(pools, links, routes, w.Sysfs.DevicePresent)
	var allocated map[string]map[string]bool
	if w.Allocations != nil && anyNIC(found) {
		if allocated, err = w.Allocations.Allocated(ctx); err != nil {
			klog.FromContext(ctx).V(2).Info("PodResources unavailable; devices counted as free", "err", err)
		}
	}
	if w.lastFree == nil {
		w.lastFree = map[string]int{}
	}
	for _, s := range w.States {
		name := s.Pool.ResourceName
		if s.Update(found[name]) {
			klog.FromContext(ctx).Info("Device pool changed", "pool", name, "devices", len(found[name]))
		}
		c := s.counts(allocated[name])
		observePool(name, c)
		if last, ok := w.lastFree[name]; ok && c.free > last && w.OnFree != nil {
			w.OnFree(name)
		}
		w.lastFree[name] = c.free
	}
	return excluded, nil
}

// Run scans at once and on every tick until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	var last []Excluded
	for {
		excluded, err := w.Scan(ctx)
		if err != nil {
			logger.Error(err, "Discovering devices")
		}
		if len(excluded) != len(last) {
			for _, e := range excluded {
				logger.Info("Link not put in a pool", "link", e.Link, "reason", e.Reason)
			}
		}
		last = excluded
		select {
		case <-ctx.Done():
			return
		case <-w.Tick:
		}
	}
}

// namesOfInterest is the filter of the links a scan must read: those a prefix pool could match,
// or every link when a pool matches by driver or PCI address (nil: no filter). Without NIC pools
// no link is read.
func namesOfInterest(pools []Pool) func(string) bool {
	var prefixes []string
	for _, p := range pools {
		switch {
		case p.Kind() != KindNIC:
		case p.InterfacePrefix != "":
			prefixes = append(prefixes, p.InterfacePrefix)
		default:
			return nil
		}
	}
	return func(name string) bool {
		for _, prefix := range prefixes {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		}
		return false
	}
}

// anyNIC reports whether a scan found a NIC: only then do the metrics need the kubelet's
// allocations (a PodResources List of every pod of the node).
func anyNIC(found map[string][]Device) bool {
	for _, devs := range found {
		for _, d := range devs {
			if d.Interface != "" {
				return true
			}
		}
	}
	return false
}
