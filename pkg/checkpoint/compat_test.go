package checkpoint

import (
	"context"
	"testing"
)

// The helpers below adapt the defect tests to the store's API, so that they could be run,
// unchanged, against the code before the fix (see the commit that added them).

func openStore(ctx context.Context, dir string) (*Store, error) { return Open(ctx, dir) }

func closeStore(s *Store) error { return s.Close() }

func list(s *Store, uid string) (entries []Entry, quarantined []string, err error) {
	l, err := s.List(uid)
	for _, q := range l.Quarantined {
		quarantined = append(quarantined, q.File)
	}
	return l.Entries, quarantined, err
}

// recordDirSyncs returns the directories fsynced from now on, in order, until the test ends.
func recordDirSyncs(t *testing.T) *[]string {
	synced := new([]string)
	orig := syncDir
	syncDir = func(dir string) error {
		*synced = append(*synced, dir)
		return orig(dir)
	}
	t.Cleanup(func() { syncDir = orig })
	return synced
}
