package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// lockPollInterval is how often Open retries the lock while another process holds it.
var lockPollInterval = 100 * time.Millisecond

// Open opens (creating if needed) the store in dir and takes its lock, waiting for as long as
// another process holds it (netplug being replaced on the node, during a rolling update with
// surge) or until ctx ends. Temporary files a crashed process left behind are then removed,
// with the pod directories they leave empty: with the lock held, none of them is being written.
func Open(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, dirPermissions); err != nil {
		return nil, fmt.Errorf("creating checkpoint directory %s: %w", dir, err)
	}
	lock, err := acquire(ctx, filepath.Join(dir, lockFile))
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, lock: lock}
	if err := s.removeLeftovers(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// acquire takes an exclusive flock on the file p (created if needed).
func acquire(ctx context.Context, p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600) //nolint:gosec // the store's own lock file
	if err != nil {
		return nil, fmt.Errorf("opening checkpoint lock %s: %w", p, err)
	}
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			if logged {
				klog.FromContext(ctx).Info("Acquired the checkpoint lock", "path", p)
			}
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("locking checkpoint directory (%s): %w", p, err)
		}
		if !logged {
			klog.FromContext(ctx).Info("Waiting for the checkpoint lock: another netplug holds it", "path", p)
			logged = true
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for the checkpoint lock %s: %w", p, context.Cause(ctx))
		case <-time.After(lockPollInterval):
		}
	}
}

// Close releases the store's lock. The store cannot be used after it.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // releases the flock
	s.lock = nil
	if err != nil {
		return fmt.Errorf("releasing checkpoint lock: %w", err)
	}
	return nil
}

// removeLeftovers removes the temporary files of interrupted Saves, and the pod directories
// they leave empty.
func (s *Store) removeLeftovers() error {
	pods, err := s.pods()
	if err != nil {
		return err
	}
	for _, uid := range pods {
		if err := s.removePodDirIfDone(filepath.Join(s.dir, uid)); err != nil {
			return err
		}
	}
	return nil
}
