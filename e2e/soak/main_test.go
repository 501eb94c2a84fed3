//go:build e2e

// Package soak is TestSoak (make soak): random plug/unplug/replug edits on many pods while faults
// hit the node, then leak and drift counts.
package soak

import (
	"testing"

	"github.com/netplug/netplug/e2e/framework"
)

// fw is the framework the soak uses; TestMain builds it once.
var fw *framework.Framework

func TestMain(m *testing.M) { framework.Main(m, func(f *framework.Framework) { fw = f }) }
