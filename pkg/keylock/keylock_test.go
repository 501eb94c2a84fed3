package keylock

import (
	"sync"
	"testing"
	"time"
)

// One key is held by one caller at a time; other keys go on meanwhile; nothing is kept after.
func TestSet(t *testing.T) {
	var s Set
	unlockA := s.Lock("a")
	got := make(chan string, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); defer s.Lock("a")(); got <- "a" }()
	go func() { defer wg.Done(); defer s.Lock("b")(); got <- "b" }()
	select {
	case k := <-got:
		if k != "b" {
			t.Fatalf("%s taken while a is held", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b waited for a")
	}
	select {
	case k := <-got:
		t.Fatalf("%s taken while a is held", k)
	case <-time.After(50 * time.Millisecond):
	}
	unlockA()
	wg.Wait()
	if k := <-got; k != "a" {
		t.Fatalf("got %s", k)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("%d keys kept", n)
	}
}
