package cli

import (
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCommand(c *common, version string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version",
		Args:  args(0, 0),
		RunE: func(*cobra.Command, []string) error {
			c.printf("kubectl-netplug %s\n", VersionString(version))
			return nil
		},
	}
}

// VersionString is version, or the module version `go install module@version` recorded, with
// the commit when the build recorded one, and the Go version and platform.
func VersionString(version string) string {
	commit := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				commit = s.Value[:12]
			}
		}
	}
	out := version
	if commit != "" {
		out += " (commit " + commit + ")"
	}
	return out + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}
