package checkpoint

import (
	"context"
	"testing"
)

// The helpers below adapt the defect tests to the store's API of the day, so that they can be
// run, unchanged, against the code before the fix.

func openStore(_ context.Context, dir string) (*Store, error) { return New(dir) }

func closeStore(*Store) error { return nil }

func list(s *Store, uid string) (entries []Entry, quarantined []string, err error) {
	entries, err = s.List(uid)
	return entries, nil, err
}

// recordDirSyncs returns the directories fsynced from now on (none: this store never syncs one).
func recordDirSyncs(*testing.T) *[]string { return new([]string) }
