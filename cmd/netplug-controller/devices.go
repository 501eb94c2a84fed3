package main

import (
	"context"
	"os"
	"time"

	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/config"
	"github.com/netplug/netplug/pkg/devices"
)

// hostDevDir is where the DaemonSet mounts the node's /dev, read-only: the health of a
// character-device pool is whether its node exists on the host.
const hostDevDir = "/host/dev"

// cdiDir is the runtime's dynamic CDI spec directory (mounted from the host).
const cdiDir = "/var/run/cdi"

// hostDev is hostDevDir when mounted; netplug run on the host itself reads /dev.
func hostDev() string {
	if _, err := os.Stat(hostDevDir); err != nil {
		return ""
	}
	return hostDevDir
}

// startPools starts discovery, health and one kubelet device plugin per configured pool, and
// returns the pools' view for the controller; nil when no pool is configured.
func startPools(ctx context.Context, cfg config.Config, pluginDir, podResourcesSocket string) (*devices.Source, error) {
	if len(cfg.DevicePools) == 0 {
		return nil, nil
	}
	pods, conn, err := devices.DialPodResources(podResourcesSocket, cfg.CRITimeout)
	if err != nil {
		return nil, err
	}
	go func() { <-ctx.Done(); _ = conn.Close() }()
	src := &devices.Source{States: map[string]*devices.State{}, Pods: pods, Host: devices.Netlink{}, Allocations: pods}
	var states []*devices.State
	for _, p := range cfg.DevicePools {
		st := devices.NewState(p)
		states = append(states, st)
		src.States[p.ResourceName] = st
	}
	w := &devices.Watcher{Sysfs: devices.Sysfs{Root: "/", HostDev: hostDev(), Kinds: devices.Netlink{}}, States: states, Allocations: pods, OnFree: src.Freed,
		Tick: time.NewTicker(5 * time.Second).C}
	if _, err := w.Scan(ctx); err != nil {
		return nil, err
	}
	go w.Run(ctx)
	for _, st := range states {
		p := &devices.Plugin{State: st, Dir: pluginDir, Tick: time.NewTicker(5 * time.Second).C}
		if st.Pool.Kind() == devices.KindChar {
			// Runtimes with CDI inject the nodes from the spec; the DeviceSpecs serve the others.
			if p.CDI, err = devices.WriteCDISpec(cdiDir, st.Pool); err != nil {
				klog.FromContext(ctx).Info("No CDI spec for the pool; device nodes go as DeviceSpecs only", "pool", st.Pool.ResourceName, "err", err)
			}
		}
		go func() { _ = p.Run(ctx) }()
		klog.FromContext(ctx).Info("Device pool", "pool", st.Pool.ResourceName, "matcher", st.Pool.Matcher())
	}
	return src, nil
}
