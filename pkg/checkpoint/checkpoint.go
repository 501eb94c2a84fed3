// Package checkpoint keeps, on the node, what netplug needs to unplug an interface exactly as it
// plugged it: the sandbox, netns, CNI config and requested attributes. An entry is written before
// each ADD and marked in flight until the outcome is recorded, marked again before each DEL and
// removed after a successful DEL, so it outlives the pod, the NAD and the controller, and an
// interrupted ADD or DEL is never mistaken for a known interface.
//
// On disk, the store is a directory that one process at a time holds (an exclusive flock on
// <dir>/.lock):
//
//	<dir>/.lock                      the lock
//	<dir>/<pod UID>/if:<iface>.json  an entry (version 2)
//	<dir>/<pod UID>/<iface>.json     an entry written before entries were versioned (version 1)
//	<dir>/<pod UID>/tmp:<random>     a Save under way (or cut short by a crash)
//	<dir>/<pod UID>/<file>.corrupt   an entry that could not be read, set aside
//
// Interface names never contain ':' (attachment.ValidateInterfaceName), so no name of one kind
// can be taken for another: a version-1 name has no ':', a version-2 name starts with "if:" and
// ends with ".json", a temporary name starts with "tmp:", and a quarantined one ends with
// ".corrupt". Pod directories are UIDs, which never start with '.'.
package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/keylock"
)

// Version is the version of the on-disk form Save writes. Version 1 is the unversioned form
// written before it (read, never written).
const Version = 2

// Entry is one plugged (or being plugged) interface, as stored on disk.
type Entry struct {
	// Version of the on-disk form: set by Save; 1 for an entry read from the unversioned form.
	Version      int             `json:"version"`
	PodNamespace string          `json:"podNamespace"`
	PodName      string          `json:"podName"`
	PodUID       string          `json:"podUID"`
	SandboxID    string          `json:"sandboxID"`
	NetNS        string          `json:"netns"`
	Namespace    string          `json:"namespace"` // of the NetworkAttachmentDefinition
	Network      string          `json:"network"`
	Interface    string          `json:"interface"`
	Config       json.RawMessage `json:"config"` // the CNI config sent with the ADD
	Attributes   Attributes      `json:"attributes"`
	// InFlight is set before an ADD (InFlightAdd) or a DEL (InFlightDel) and cleared once the
	// outcome is recorded (network-status written after an ADD; the entry deleted after a DEL).
	// An entry still in flight is an interface in an unknown state: the operation failed or
	// was cut short by a crash of netplug or Multus.
	InFlight string `json:"inFlight,omitempty"`
	// Origin says who asked for the interface: the attachment.Source of its step
	// (OriginAnnotation, OriginDevice). Empty in entries written before it existed (which all
	// came from the annotation).
	Origin string `json:"origin,omitempty"`
	// Adopted is true for an interface netplug did not plug itself but recorded: one Multus
	// attached at pod creation for an element of the selection. It is never in flight.
	Adopted bool `json:"adopted,omitempty"`
	// Device is the pool device netplug hot-plugged for this interface (a NAD whose
	// resourceName is one of netplug's pools); written before the ADD, so that a restart
	// knows the device is out, and which one to return.
	Device *Device `json:"device,omitempty"`
}

// Device is a pool device held by an interface, as stored on disk.
type Device struct {
	Pool      string `json:"pool"` // the pool's resource name
	ID        string `json:"id"`   // the kubelet's device ID
	Interface string `json:"interface"`
	PCI       string `json:"pci,omitempty"`
	// HostAddresses and HostMTU are what the link had on the host, put back on its return.
	HostAddresses []string `json:"hostAddresses,omitempty"`
	HostMTU       int      `json:"hostMTU,omitempty"`
}

// Attributes are the requested attributes of an interface, as stored on disk. They are the
// planner's attachment.Attributes, decoupled from it so that the planner can change without
// changing what is on disk.
type Attributes struct {
	IPs     []string               `json:"ips,omitempty"`
	MAC     string                 `json:"mac,omitempty"`
	CNIArgs map[string]interface{} `json:"cni-args,omitempty"`
}

// The operations an entry can be in flight for.
const (
	InFlightAdd = "ADD"
	InFlightDel = "DEL"
)

// The origins: the planner's sources, as written on disk.
const (
	// OriginAnnotation: asked for by the network-selection annotation.
	OriginAnnotation = string(attachment.SourceAnnotation)
	// OriginDevice: a NIC of a device pool netplug moved into the pod.
	OriginDevice = string(attachment.SourceDevice)
)

// OriginClaim is the Origin of an interface a DRA ResourceClaim asked for (plugged by the NRI
// hook at sandbox creation). The annotation path never removes or changes it.
const OriginClaim = string(attachment.SourceClaim)

// AttributesFrom is the on-disk form of the planner's attributes.
func AttributesFrom(a attachment.Attributes) Attributes {
	return Attributes{IPs: slices.Clone(a.IPs), MAC: a.MAC, CNIArgs: maps.Clone(a.CNIArgs)}
}

// Planner is the attributes as the planner sees them.
func (a Attributes) Planner() attachment.Attributes {
	return attachment.Attributes{IPs: slices.Clone(a.IPs), MAC: a.MAC, CNIArgs: maps.Clone(a.CNIArgs)}
}

// Record is the entry as the planner sees it.
func (e Entry) Record() attachment.Record {
	r := attachment.Record{Namespace: e.Namespace, Network: e.Network, Interface: e.Interface,
		Attributes: e.Attributes.Planner(), Uncertain: e.InFlight != "", ClaimBacked: e.Origin == OriginClaim}
	switch e.Origin {
	case OriginDevice:
		r.Source = attachment.SourceDevice
	case OriginClaim:
		r.Source = attachment.SourceClaim
	} // else the annotation's, as every entry before origins
	return r
}

// Quarantined is a checkpoint file that could not be read as an entry. It was renamed aside
// (File + ".corrupt", bytes unchanged) and is never listed again; the interface it described,
// if any, is unknown to netplug from now on.
type Quarantined struct {
	File string // the path it had
	Err  error  // why it was set aside
}

// Listing is what List found for a pod.
type Listing struct {
	Entries     []Entry       // sorted by Interface
	Quarantined []Quarantined // set aside by this List; reported once
}

// ErrClosed is returned by a Store's methods after Close.
var ErrClosed = errors.New("checkpoint store is closed")

// Store is a directory of entries, held by one process at a time.
type Store struct {
	dir string

	// closeMu is held for reading by every operation and for writing by Close.
	closeMu sync.RWMutex
	lock    *os.File // holds the flock; nil once closed
	// pods serialises the changes of one pod's directory (a Delete removing it while a Save
	// fills it); different pods' records are written side by side, each with its own fsyncs.
	podDirs keylock.Set
}

// use takes the store for one operation on podUID ("" for none): ErrClosed once closed.
func (s *Store) use(podUID string) (func(), error) {
	s.closeMu.RLock()
	if s.lock == nil {
		s.closeMu.RUnlock()
		return nil, ErrClosed
	}
	if podUID == "" {
		return s.closeMu.RUnlock, nil
	}
	unlock := s.podDirs.Lock(podUID)
	return func() { unlock(); s.closeMu.RUnlock() }, nil
}

const (
	lockFile       = ".lock"
	entryPrefix    = "if:"
	entrySuffix    = ".json"
	tempPattern    = "tmp:*"
	corruptSuffix  = ".corrupt"
	dirPermissions = 0o700
)

// uidPattern admits Kubernetes UIDs (and test UIDs) but never a path separator or "..".
var uidPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-]{0,63}$`)

// oldTempPattern is the temporary file of a Save of the unversioned store (os.CreateTemp with
// ".tmp-*"): its random part is decimal, so it never ends with ".json" as an entry does.
var oldTempPattern = regexp.MustCompile(`^\.tmp-[0-9]+$`)

func isTemp(name string) bool {
	return strings.HasPrefix(name, tempPattern[:len(tempPattern)-1]) || oldTempPattern.MatchString(name)
}

func (s *Store) podDir(podUID string) (string, error) {
	if !uidPattern.MatchString(podUID) {
		return "", fmt.Errorf("invalid pod UID %q", podUID)
	}
	return filepath.Join(s.dir, podUID), nil
}

// paths returns the pod's directory and the entry's file name, and that of its version-1 form.
func (s *Store) paths(podUID, iface string) (podDir, name, legacy string, err error) {
	if podDir, err = s.podDir(podUID); err != nil {
		return "", "", "", err
	}
	if err := attachment.ValidateInterfaceName(iface); err != nil {
		return "", "", "", err
	}
	return podDir, entryPrefix + iface + entrySuffix, iface + entrySuffix, nil
}

// Save writes e atomically (temporary file, fsync, rename, fsync of the directory), replacing
// any entry for the same interface, including one in the version-1 form. It sets e's Version.
func (s *Store) Save(e Entry) error {
	done, err := s.use(e.PodUID)
	if err != nil {
		return err
	}
	defer done()
	podDir, name, legacy, err := s.paths(e.PodUID, e.Interface)
	if err != nil {
		return fmt.Errorf("saving checkpoint: %w", err)
	}
	e.Version = Version
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding checkpoint for %s: %w", e.Interface, err)
	}
	if err := s.makePodDir(podDir); err != nil {
		return fmt.Errorf("saving checkpoint: %w", err)
	}
	p := filepath.Join(podDir, name)
	if err := WriteFile(podDir, p, data); err != nil {
		return fmt.Errorf("saving checkpoint %s: %w", p, err)
	}
	// The new file is in place: the version-1 one, if any, is now the older record.
	if err := removeFile(podDir, filepath.Join(podDir, legacy)); err != nil {
		return fmt.Errorf("saving checkpoint %s: %w", p, err)
	}
	return nil
}

func (s *Store) makePodDir(podDir string) error {
	err := os.Mkdir(podDir, dirPermissions)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(s.dir)
}

// WriteFile writes data to p durably and atomically: through a temporary file in dir (named
// tmp:*, which a reader of dir skips), synced, renamed over p, and the directory synced. The
// node-local stores (checkpoints, prepared DRA claims) all write this way.
func WriteFile(dir, p string, data []byte) error {
	tmp, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename; best effort otherwise
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return err
	}
	return syncDir(dir)
}

// removeFile removes p from dir, durably; a missing file is not an error.
func removeFile(dir, p string) error {
	err := os.Remove(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(dir)
}

// Delete removes the entry for one interface (in either form), and the pod's directory once it
// holds no entry. A missing entry is not an error.
func (s *Store) Delete(podUID, iface string) error {
	done, err := s.use(podUID)
	if err != nil {
		return err
	}
	defer done()
	podDir, name, legacy, err := s.paths(podUID, iface)
	if err != nil {
		return fmt.Errorf("deleting checkpoint: %w", err)
	}
	// The older form first: were the newer one removed first, a crash in between would bring
	// the older record back.
	for _, n := range []string{legacy, name} {
		if err := removeFile(podDir, filepath.Join(podDir, n)); err != nil {
			return fmt.Errorf("deleting checkpoint: %w", err)
		}
	}
	return s.removePodDirIfDone(podDir)
}

// removePodDirIfDone removes what a crash in the middle of a Save left in the pod's directory,
// and the directory, once no entry is left. A quarantined file keeps the directory.
func (s *Store) removePodDirIfDone(podDir string) error {
	files, err := os.ReadDir(podDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting checkpoint: %w", err)
	}
	var temps []string
	for _, f := range files {
		if !isTemp(f.Name()) {
			return nil
		}
		temps = append(temps, filepath.Join(podDir, f.Name()))
	}
	for _, t := range temps {
		_ = os.Remove(t)
	}
	if err := os.Remove(podDir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("deleting checkpoint directory: %w", err)
	}
	return syncDir(s.dir)
}

// List returns the pod's entries sorted by interface. A file that cannot be read as an entry of
// this pod is quarantined (renamed aside, never listed again) and reported in the listing; an
// error is returned only when the directory or a file cannot be read at all.
func (s *Store) List(podUID string) (Listing, error) {
	done, err := s.use(podUID)
	if err != nil {
		return Listing{}, err
	}
	defer done()
	dir, err := s.podDir(podUID)
	if err != nil {
		return Listing{}, fmt.Errorf("listing checkpoints: %w", err)
	}
	files, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Listing{}, nil
	}
	if err != nil {
		return Listing{}, fmt.Errorf("listing checkpoints in %s: %w", dir, err)
	}
	var out Listing
	byInterface := map[string]Entry{}
	for _, f := range files {
		if f.IsDir() || !strings.HasSuffix(f.Name(), entrySuffix) {
			continue
		}
		p := filepath.Join(dir, f.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			return Listing{}, fmt.Errorf("reading checkpoint: %w", err)
		}
		e, err := decode(podUID, f.Name(), data)
		if err != nil {
			if qerr := quarantine(dir, p); qerr != nil {
				return Listing{}, fmt.Errorf("quarantining checkpoint %s (%w): %w", p, err, qerr)
			}
			out.Quarantined = append(out.Quarantined, Quarantined{File: p, Err: err})
			continue
		}
		// Both forms of one interface: a crash came between a Save's rename and its removal of
		// the version-1 file, which is the older record.
		if prev, ok := byInterface[e.Interface]; !ok || prev.Version < e.Version {
			byInterface[e.Interface] = e
		}
	}
	for _, iface := range slices.Sorted(maps.Keys(byInterface)) {
		out.Entries = append(out.Entries, byInterface[iface])
	}
	return out, nil
}

// decode reads the entry in the file named name of the pod's directory, checking that it is
// the entry that file name stands for.
func decode(podUID, name string, data []byte) (Entry, error) {
	iface, versioned := strings.CutPrefix(strings.TrimSuffix(name, entrySuffix), entryPrefix)
	var e Entry
	if len(bytes.TrimSpace(data)) == 0 {
		return e, errors.New("empty checkpoint")
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("decoding checkpoint: %w", err)
	}
	switch {
	case versioned && e.Version != Version:
		return e, fmt.Errorf("checkpoint of version %d, want %d", e.Version, Version)
	case !versioned && e.Version != 0:
		return e, fmt.Errorf("checkpoint of version %d in an unversioned file", e.Version)
	case !versioned:
		e.Version = 1
	}
	if err := attachment.ValidateInterfaceName(e.Interface); err != nil {
		return e, fmt.Errorf("checkpoint: %w", err)
	}
	if e.Interface != iface {
		return e, fmt.Errorf("checkpoint of interface %q in the file of %q", e.Interface, iface)
	}
	if e.PodUID != podUID {
		return e, fmt.Errorf("checkpoint of pod %q in the directory of pod %q", e.PodUID, podUID)
	}
	return e, nil
}

// quarantine renames p aside, to a name that is never listed, keeping its bytes.
func quarantine(dir, p string) error {
	if err := os.Rename(p, p+corruptSuffix); err != nil {
		return err
	}
	return syncDir(dir)
}

// Pods returns the UIDs of pods that have entries (or quarantined files).
func (s *Store) Pods() ([]string, error) {
	done, err := s.use("")
	if err != nil {
		return nil, err
	}
	defer done()
	return s.pods()
}

func (s *Store) pods() ([]string, error) {
	files, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing checkpoint directory %s: %w", s.dir, err)
	}
	var out []string
	for _, f := range files {
		if f.IsDir() && uidPattern.MatchString(f.Name()) {
			out = append(out, f.Name())
		}
	}
	return out, nil
}

// SyncDir makes the changes to a directory's entries (renames, removals, creations) durable.
func SyncDir(dir string) error { return syncDir(dir) }

// syncDir is SyncDir's body: a variable, so that tests can see it is called.
var syncDir = func(dir string) error {
	d, err := os.Open(dir) //nolint:gosec // the store's own directory
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return d.Close()
}
