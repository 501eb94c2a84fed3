//go:build e2e

// Package suite is netplug's end-to-end suite (TestNetplug, TestSafety, TestCLI, TestDRA,
// TestAdmissionPolicy, TestDevicePools, TestDeviceHotplug, TestUninstall) on the local cluster, through the
// framework of e2e/framework.
package suite

import (
	"testing"

	"github.com/netplug/netplug/e2e/framework"
)

// fw is the framework every scenario uses; TestMain builds it once.
var fw *framework.Framework

func TestMain(m *testing.M) { framework.Main(m, func(f *framework.Framework) { fw = f }) }

// scenario is the framework's scenario with the suite's own helpers (the methods in the suite's
// files).
type scenario struct{ *framework.Scenario }

// newScenario is fw.NewScenario for the suite's tests.
func newScenario(t *testing.T, short string) *scenario { return &scenario{fw.NewScenario(t, short)} }

// scenarioSpec is one scenario of a suite. A disruptive one (it restarts or stops a component)
// runs inline; the others call t.Parallel, which holds them until the suite function has
// returned, so they run together afterwards and never overlap a disruption.
type scenarioSpec struct {
	name       string
	disruptive bool
	run        func(*testing.T)
}

func runScenarios(t *testing.T, specs []scenarioSpec) {
	for _, sc := range specs {
		t.Run(sc.name, func(t *testing.T) {
			if !sc.disruptive {
				t.Parallel()
			}
			sc.run(t)
		})
	}
}
