package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// Records of different pods are written side by side; those of one pod one at a time (a Delete
// emptying the pod's directory never races a Save into it). Run with -race.
func TestConcurrentSavesAndDeletes(t *testing.T) {
	s, err := Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close() //nolint:errcheck // test
	uids := []string{"11111111-0000-4000-8000-000000000001", "11111111-0000-4000-8000-000000000002", "11111111-0000-4000-8000-000000000003"}
	var wg sync.WaitGroup
	for _, uid := range uids {
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				iface := fmt.Sprintf("net%d", i)
				for range 20 {
					if err := s.Save(Entry{PodUID: uid, Interface: iface, Network: "n"}); err != nil {
						t.Error(err)
						return
					}
					if err := s.Delete(uid, iface); err != nil {
						t.Error(err)
						return
					}
				}
				if err := s.Save(Entry{PodUID: uid, Interface: iface, Network: "n"}); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	for _, uid := range uids {
		l, err := s.List(uid)
		if err != nil || len(l.Entries) != 4 || len(l.Quarantined) != 0 {
			t.Fatalf("pod %s: %+v, %v; want its 4 records", uid, l, err)
		}
	}
	if n := s.podDirs.Len(); n != 0 {
		t.Fatalf("%d pod locks left", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(Entry{PodUID: uids[0], Interface: "net9"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v", err)
	}
}
