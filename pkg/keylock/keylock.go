// Package keylock is a set of mutexes by key (a pod, a pod's directory), each made on first use
// and dropped once nobody holds or waits for it.
package keylock

import "sync"

// Set is a mutex per key. The zero Set is ready to use.
type Set struct {
	mu    sync.Mutex
	locks map[string]*entry
}

type entry struct {
	sync.Mutex
	users int // holders and waiters
}

// Lock locks key and returns its unlock.
func (s *Set) Lock(key string) (unlock func()) {
	s.mu.Lock()
	if s.locks == nil {
		s.locks = map[string]*entry{}
	}
	e := s.locks[key]
	if e == nil {
		e = &entry{}
		s.locks[key] = e
	}
	e.users++
	s.mu.Unlock()
	e.Lock()
	return func() {
		e.Unlock()
		s.mu.Lock()
		if e.users--; e.users == 0 {
			delete(s.locks, key)
		}
		s.mu.Unlock()
	}
}

// Len is the number of keys held or waited for.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.locks)
}
