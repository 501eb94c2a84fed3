package health

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStale(t *testing.T) {
	table := filepath.Join(t.TempDir(), "mountinfo")
	content := strings.Join([]string{
		`22 1 0:21 / / rw - overlay overlay rw`,
		`146 96 254:0 /var/lib/e2e/multus/run//deleted /run/multus ro,relatime - ext4 /dev/vda rw`,
		`147 96 254:0 /run/containerd /run/containerd ro,relatime - ext4 /dev/vda rw`,
		`148 96 254:0 /old//deleted /run/remounted ro - ext4 /dev/vda rw`,
		`149 96 254:0 /new /run/remounted ro - ext4 /dev/vda rw`,
		`150 96 254:0 /a\040b//deleted /run/with\040space ro - ext4 /dev/vda rw`,
	}, "\n")
	if err := os.WriteFile(table, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	for dir, stale := range map[string]bool{
		"/run/multus": true, "/run/multus/": true, "/run/containerd": false, "/run/remounted": false,
		"/run/with space": true, "/not/a/mount": false,
	} {
		if err := Stale(table, dir); (err != nil) != stale {
			t.Errorf("Stale(%s) = %v, want stale=%v", dir, err, stale)
		}
	}
	if err := Stale(filepath.Join(t.TempDir(), "missing"), "/x"); err == nil {
		t.Error("missing mount table is not an error")
	}
	if err := Stale(MountInfo, "/"); err != nil {
		t.Errorf("this process's own root: %v", err)
	}
}
