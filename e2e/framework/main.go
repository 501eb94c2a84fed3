//go:build e2e

package framework

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"
	"testing"
	"time"
)

// durations collects "SCENARIO <name> took <d>" for the summary printed at the end.
var durations sync.Map

// Main is the TestMain of every e2e package: it builds the framework from the cluster's env
// file, hands it to use, runs the tests and prints how long each scenario took. Without the env
// file (no cluster was ever brought up here) it runs nothing and says so.
func Main(m *testing.M, use func(*Framework)) {
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
		if _, err := os.Stat(envPath()); errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "e2e: no cluster env file %s (make cluster-up): skipping every test\n", envPath())
			return 0
		}
		f, err := NewFramework()
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
			return 1
		}
		defer f.Close()
		use(f)
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
