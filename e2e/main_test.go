//go:build e2e

// Package e2e tests netplug end to end on the local cluster of hack/cluster/up.sh, with netplug
// deployed as its DaemonSet (hack/run/e2e.sh does all of it: make e2e). Every scenario checks the
// pod's network-status and the real links, addresses and MACs inside the pod's network namespace.
//
// Run against a running cluster: make e2e-run (or go test -tags e2e -v ./e2e/...). The tests
// run as root on the node: they read pod network namespaces, the IPAM state and /proc.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
	"time"
)

// fw is the framework every scenario uses; TestMain builds it once.
var fw *Framework

// durations collects "SCENARIO <name> took <d>" for the summary printed at the end.
var durations sync.Map

func TestMain(m *testing.M) {
	start := time.Now()
	// The scenarios mostly wait on the cluster: unless -parallel says otherwise, run all the
	// non-disruptive ones at once rather than GOMAXPROCS at a time.
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "16")
	}
	code := func() int {
		f, err := NewFramework()
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
			return 1
		}
		defer f.Close()
		fw = f
		return m.Run()
	}()
	printSummary(time.Since(start))
	os.Exit(code)
}

func printSummary(total time.Duration) {
	var names []string
	durations.Range(func(k, _ any) bool {
		names = append(names, k.(string))
		return true
	})
	if len(names) == 0 {
		return
	}
	sort.Strings(names)
	fmt.Println("e2e scenario durations:")
	for _, n := range names {
		d, _ := durations.Load(n)
		fmt.Printf("  %-45s %6.1fs\n", n, d.(time.Duration).Seconds())
	}
	fmt.Printf("e2e suite took %.1fs\n", total.Seconds())
}
