package dra

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/dra/config"
)

// StoreVersion is the version of the on-disk form of a prepared claim.
const StoreVersion = 1

// PreparedClaim is what PrepareResourceClaims recorded of one claim on this node: enough for the
// NRI hook to plug its devices into the pods that reserve it, with no API call, even after a
// restart of netplug between prepare and sandbox start.
type PreparedClaim struct {
	Version   int    `json:"version"`
	UID       string `json:"uid"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Pods are the UIDs of the pods the claim is reserved for (status.reservedFor).
	Pods    []string         `json:"pods"`
	Devices []PreparedDevice `json:"devices"`
}

// PreparedDevice is one allocated device of the claim, with its validated configuration.
type PreparedDevice struct {
	Request    string            `json:"request"`
	Pool       string            `json:"pool"`
	Device     string            `json:"device"`
	Attachment config.Attachment `json:"attachment"`
	// NIC is the pool NIC behind a device of class netplug.io-nic (nil for a CNI device): the
	// hook moves it in, and it is reserved in its pool from prepare to unprepare.
	NIC *PreparedNIC `json:"nic,omitempty"`
}

// ClaimStore is a directory of prepared claims, one file each, held by one process at a time
// (an exclusive flock on <dir>/.lock), written like pkg/checkpoint's entries: temporary file,
// fsync, rename, fsync of the directory.
//
//	<dir>/.lock
//	<dir>/claim:<uid>.json
//	<dir>/tmp:<random>      a Save under way, or cut short by a crash (removed by OpenClaimStore)
type ClaimStore struct {
	dir  string
	mu   sync.Mutex
	lock *os.File
}

var claimUIDPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-]{0,63}$`)

// OpenClaimStore opens (creating) the store in dir and takes its lock without waiting: the
// checkpoint store's lock already serialises netplug processes on a node.
func OpenClaimStore(dir string) (*ClaimStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating prepared-claim directory %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600) //nolint:gosec // the store's own lock
	if err != nil {
		return nil, fmt.Errorf("opening prepared-claim lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("locking prepared-claim directory %s (another netplug holds it?): %w", dir, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "tmp:*"))
	for _, l := range leftovers {
		_ = os.Remove(l)
	}
	return &ClaimStore{dir: dir, lock: f}, nil
}

// Close releases the lock.
func (s *ClaimStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

func (s *ClaimStore) path(uid string) (string, error) {
	if !claimUIDPattern.MatchString(uid) {
		return "", fmt.Errorf("invalid claim UID %q", uid)
	}
	return filepath.Join(s.dir, "claim:"+uid+".json"), nil
}

// Save writes c atomically, replacing the claim's earlier record.
func (s *ClaimStore) Save(c PreparedClaim) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return errors.New("prepared-claim store is closed")
	}
	p, err := s.path(c.UID)
	if err != nil {
		return err
	}
	c.Version = StoreVersion
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return checkpoint.WriteFile(s.dir, p, data)
}

// Delete removes the claim's record; a missing one is not an error.
func (s *ClaimStore) Delete(uid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.path(uid)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return s.syncDir()
}

// Get returns the claim's record; ok is false when there is none.
func (s *ClaimStore) Get(uid string) (c PreparedClaim, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.path(uid)
	if err != nil {
		return c, false, err
	}
	c, err = readClaim(p)
	if errors.Is(err, fs.ErrNotExist) {
		return c, false, nil
	}
	return c, err == nil, err
}

// ForPod returns the prepared claims reserved for the pod, sorted by namespace/name.
func (s *ClaimStore) ForPod(podUID string) ([]PreparedClaim, error) {
	return s.list(func(c PreparedClaim) bool { return slices.Contains(c.Pods, podUID) })
}

// List returns every prepared claim, sorted by namespace/name.
func (s *ClaimStore) List() ([]PreparedClaim, error) {
	return s.list(func(PreparedClaim) bool { return true })
}

func (s *ClaimStore) list(match func(PreparedClaim) bool) ([]PreparedClaim, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	files, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing prepared claims: %w", err)
	}
	var out []PreparedClaim
	for _, f := range files {
		if !strings.HasPrefix(f.Name(), "claim:") || !strings.HasSuffix(f.Name(), ".json") {
			continue
		}
		c, err := readClaim(filepath.Join(s.dir, f.Name()))
		if err != nil {
			return nil, err
		}
		if match(c) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b PreparedClaim) int { return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) })
	return out, nil
}

func readClaim(p string) (PreparedClaim, error) {
	var c PreparedClaim
	data, err := os.ReadFile(p) //nolint:gosec // the store's own file
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("reading prepared claim %s: %w", p, err)
	}
	if c.Version != StoreVersion {
		return c, fmt.Errorf("prepared claim %s has version %d, want %d", p, c.Version, StoreVersion)
	}
	return c, nil
}

func (s *ClaimStore) syncDir() error { return checkpoint.SyncDir(s.dir) }
