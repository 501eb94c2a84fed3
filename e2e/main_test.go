//go:build e2e

// Package e2e tests netplug end to end on the local cluster of hack/cluster/up.sh, with netplug
// deployed as its DaemonSet (hack/run/e2e.sh does all of it: make e2e). Every scenario checks the
// pod's network-status and the real links, addresses and MACs inside the pod's network namespace.
//
// Run against a running cluster: make e2e-run (or go test -tags e2e -v ./e2e/...). The tests
// run as root on the node: they read pod network namespaces, the IPAM state and /proc.
package e2e

import "testing"

// fw is the framework every scenario uses; TestMain builds it once.
var fw *Framework

func TestMain(m *testing.M) { Main(m, func(f *Framework) { fw = f }) }
