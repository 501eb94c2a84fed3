// The mount check tells whether a bind mount of a host directory still shows that directory.
//
// The Multus daemon removes and recreates its socket directory when it starts, so a hostPath
// mount of that directory keeps showing the deleted one, and its new socket is invisible.
// Only a new container gets a fresh bind; a failing liveness check is how to ask for one.
package health

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MountInfo is the mount table of this process.
const MountInfo = "/proc/self/mountinfo"

// Stale returns an error if the mount covering dir (per the mountinfo file) has a deleted
// source. A dir that is not a mount point of its own is never stale.
func Stale(mountinfo, dir string) error {
	f, err := os.Open(mountinfo)
	if err != nil {
		return fmt.Errorf("reading mount table: %w", err)
	}
	defer f.Close() //nolint:errcheck // read-only
	dir = filepath.Clean(dir)
	var root string
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		// id parent major:minor root mountpoint options ... (proc(5)); later mounts win.
		fields := strings.Fields(scanner.Text())
		if len(fields) > 4 && unescape(fields[4]) == dir {
			root = unescape(fields[3])
		}
	}
	if err := scanner.Err(); err != nil {
		return fmt.Errorf("reading mount table: %w", err)
	}
	if strings.HasSuffix(root, "//deleted") {
		return fmt.Errorf("the host directory mounted at %s was deleted and recreated on the host (its daemon restarted); this container needs a restart to see it", dir)
	}
	return nil
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and backslash.
func unescape(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
