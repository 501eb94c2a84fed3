package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func mustOpen(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := openStore(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ifaces(entries []Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Interface)
	}
	return out
}

// Interface names that look like the store's own files (temporary, lock, quarantined, hidden)
// are entries like any other: listed, and kept when the store is opened again.
func TestInterfaceNamesNeverCollideWithStoreFiles(t *testing.T) {
	names := []string{".tmp-a", ".tmp-1", ".lock", ".x", "a.json", "net1.corrupt", "tmp-1", "if-x", "x.json.corrupt", "-", "lock"}
	dir := t.TempDir()
	s := mustOpen(t, dir)
	for _, n := range names {
		if err := s.Save(Entry{PodUID: "uid", Interface: n, Network: "n-" + n}); err != nil {
			t.Fatalf("Save(%q): %v", n, err)
		}
	}
	if err := closeStore(s); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir) // cleans up after a crash: must not take an entry for its own file
	defer closeStore(s)  //nolint:errcheck // test
	got, quarantined, err := list(s, "uid")
	want := slices.Clone(names)
	slices.Sort(want)
	if err != nil || !slices.Equal(ifaces(got), want) || len(quarantined) != 0 {
		t.Fatalf("List = %v (quarantined %v), %v; want %v", ifaces(got), quarantined, err, want)
	}
	for _, e := range got {
		if e.Network != "n-"+e.Interface {
			t.Errorf("entry %q has network %q", e.Interface, e.Network)
		}
	}
	for _, n := range names {
		if err := s.Delete("uid", n); err != nil {
			t.Fatal(err)
		}
	}
	if pods, err := s.Pods(); err != nil || len(pods) != 0 {
		t.Fatalf("Pods after deleting every entry = %v, %v", pods, err)
	}
}

// A checkpoint that cannot be decoded is set aside (bytes kept) and reported; the others are
// listed, and the pod is not frozen.
func TestCorruptEntryIsQuarantined(t *testing.T) {
	for _, tc := range []struct{ name, file, content string }{
		{"empty", "net9.json", ""},
		{"truncated", "net9.json", `{"podUID":"uid","interface":"net9"`},
		{"not an object", "net9.json", `[1,2]`},
		{"another interface", "net9.json", `{"podUID":"uid","interface":"net8"}`},
		{"another pod", "net9.json", `{"podUID":"uid-2","interface":"net9"}`},
		{"invalid interface", "a b.json", `{"podUID":"uid","interface":"a b"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir)
			defer closeStore(s) //nolint:errcheck // test
			if err := s.Save(Entry{PodUID: "uid", Interface: "net1"}); err != nil {
				t.Fatal(err)
			}
			bad := filepath.Join(dir, "uid", tc.file)
			if err := os.WriteFile(bad, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, quarantined, err := list(s, "uid")
			if err != nil || !slices.Equal(ifaces(got), []string{"net1"}) || !slices.Equal(quarantined, []string{bad}) {
				t.Fatalf("List = %v (quarantined %v), %v; want [net1], %s quarantined", ifaces(got), quarantined, err, bad)
			}
			if kept, err := os.ReadFile(bad + ".corrupt"); err != nil || string(kept) != tc.content {
				t.Fatalf("quarantined bytes = %q, %v; want %q", kept, err, tc.content)
			}
			if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("corrupt file still in place: %v", err)
			}
			got, quarantined, err = list(s, "uid")
			if err != nil || !slices.Equal(ifaces(got), []string{"net1"}) || len(quarantined) != 0 {
				t.Fatalf("second List = %v (quarantined %v), %v; want [net1], nothing quarantined", ifaces(got), quarantined, err)
			}
		})
	}
}

// Every rename and remove is made durable by syncing its directory, and so is a new pod directory.
func TestDirectoryIsSyncedAfterEveryChange(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer closeStore(s) //nolint:errcheck // test
	podDir := filepath.Join(dir, "uid")
	synced := recordDirSyncs(t)
	expect := func(op string, want ...string) {
		t.Helper()
		if !slices.Equal(*synced, want) {
			t.Errorf("%s synced %v, want %v", op, *synced, want)
		}
		*synced = nil
	}
	if err := s.Save(Entry{PodUID: "uid", Interface: "net1"}); err != nil {
		t.Fatal(err)
	}
	expect("first Save of a pod", dir, podDir) // the new pod directory, then the rename
	if err := s.Save(Entry{PodUID: "uid", Interface: "net2"}); err != nil {
		t.Fatal(err)
	}
	expect("Save", podDir)
	if err := s.Delete("uid", "net1"); err != nil {
		t.Fatal(err)
	}
	expect("Delete", podDir)
	if err := s.Delete("uid", "net2"); err != nil {
		t.Fatal(err)
	}
	expect("Delete of the last entry", podDir, dir) // the entry, then the pod directory
	if err := os.MkdirAll(podDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(podDir, "net3.json"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := list(s, "uid"); err != nil {
		t.Fatal(err)
	}
	expect("quarantine", podDir)
}

// Two stores on one directory exclude each other: the second Open waits until the first is
// closed, or until its context ends.
func TestOpenWaitsForTheLock(t *testing.T) {
	dir := t.TempDir()
	first := mustOpen(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if s, err := openStore(ctx, dir); err == nil {
		_ = closeStore(s)
		t.Fatal("second Open succeeded while the first store was open")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Open = %v, want the context's error", err)
	}

	opened := make(chan *Store)
	go func() {
		s, err := openStore(context.Background(), dir)
		if err != nil {
			t.Error(err)
		}
		opened <- s
	}()
	select {
	case <-opened:
		t.Fatal("Open returned while the first store was still open")
	case <-time.After(300 * time.Millisecond):
	}
	if err := closeStore(first); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-opened:
		if err := closeStore(s); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Open still waiting after the first store was closed")
	}
}

// The on-disk form carries its version.
func TestSavedEntriesAreVersioned(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer closeStore(s) //nolint:errcheck // test
	if err := s.Save(Entry{PodUID: "uid", Interface: "net1"}); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "uid", "*.json"))
	if len(files) != 1 {
		t.Fatalf("files %v, want one", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw["version"]) != "2" {
		t.Fatalf("version %s in %s, want 2", raw["version"], data)
	}
}
