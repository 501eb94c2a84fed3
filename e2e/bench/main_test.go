//go:build e2e

// Package bench is TestBench (make bench): hot-plug latency, burst throughput and footprint of
// netplug against raw Multus /delegate calls.
package bench

import (
	"testing"

	"github.com/netplug/netplug/e2e/framework"
)

// fw is the framework the bench uses; TestMain builds it once.
var fw *framework.Framework

func TestMain(m *testing.M) { framework.Main(m, func(f *framework.Framework) { fw = f }) }
