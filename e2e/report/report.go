// Package report holds the figures of the e2e soak and benchmark (e2e/soak, e2e/bench) and
// renders them: Markdown tables on stdout and JSON files. It has no e2e dependency, so its unit
// tests run with the other unit tests (make unit).
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// Round2 rounds f to two decimals.
func Round2(f float64) float64 { return math.Round(f*100) / 100 }

// WriteJSON writes v, indented, to path, creating its directory.
func WriteJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}
