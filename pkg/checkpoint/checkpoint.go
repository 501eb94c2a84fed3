// Package checkpoint keeps, on the node, what netplug needs to unplug an interface exactly as it
// plugged it: the sandbox, netns, CNI config and requested attributes. An entry is written before
// each ADD and marked in flight until the outcome is recorded, marked again before each DEL and
// removed after a successful DEL, so it outlives the pod, the NAD and the controller, and an
// interrupted ADD or DEL is never mistaken for a known interface.
package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/netplug/netplug/pkg/attachment"
)

// Entry is one plugged (or being plugged) interface.
type Entry struct {
	PodNamespace string                `json:"podNamespace"`
	PodName      string                `json:"podName"`
	PodUID       string                `json:"podUID"`
	SandboxID    string                `json:"sandboxID"`
	NetNS        string                `json:"netns"`
	Namespace    string                `json:"namespace"` // of the NetworkAttachmentDefinition
	Network      string                `json:"network"`
	Interface    string                `json:"interface"`
	Config       json.RawMessage       `json:"config"` // the CNI config sent with the ADD
	Attributes   attachment.Attributes `json:"attributes"`
	// InFlight is set before an ADD (InFlightAdd) or a DEL (InFlightDel) and cleared once the
	// outcome is recorded (network-status written after an ADD; the entry deleted after a DEL).
	// An entry still in flight is an interface in an unknown state: the operation failed or
	// was cut short by a crash of netplug or Multus.
	InFlight string `json:"inFlight,omitempty"`
}

// The operations an entry can be in flight for.
const (
	InFlightAdd = "ADD"
	InFlightDel = "DEL"
)

// Record is the entry as the planner sees it.
func (e Entry) Record() attachment.Record {
	return attachment.Record{Namespace: e.Namespace, Network: e.Network, Interface: e.Interface,
		Attributes: e.Attributes, Uncertain: e.InFlight != ""}
}

// Store is a directory of entries: <dir>/<pod UID>/<interface>.json.
type Store struct {
	dir string
}

// New opens (creating if needed) the store in dir. Temporary files a crashed process left
// behind are removed, with the pod directories they leave empty: only one controller runs per
// node, so none of them is being written.
func New(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating checkpoint directory %s: %w", dir, err)
	}
	s := &Store{dir: dir}
	pods, err := s.Pods()
	if err != nil {
		return nil, err
	}
	for _, uid := range pods {
		s.removeTempFiles(filepath.Join(dir, uid))
		_ = os.Remove(filepath.Join(dir, uid)) // only succeeds when empty
	}
	return s, nil
}

// removeTempFiles removes the ".tmp-*" files of an interrupted Save from a pod's directory.
func (s *Store) removeTempFiles(podDir string) {
	tmps, _ := filepath.Glob(filepath.Join(podDir, ".tmp-*"))
	for _, t := range tmps {
		_ = os.Remove(t)
	}
}

// uidPattern admits Kubernetes UIDs (and test UIDs) but never a path separator or "..".
var uidPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-]{0,63}$`)

func (s *Store) path(podUID, iface string) (string, error) {
	if !uidPattern.MatchString(podUID) {
		return "", fmt.Errorf("invalid pod UID %q", podUID)
	}
	if iface == "" {
		return filepath.Join(s.dir, podUID), nil
	}
	if err := attachment.ValidateInterfaceName(iface); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, podUID, iface+".json"), nil
}

// Save writes e atomically (temp file + rename), replacing any entry for the same interface.
func (s *Store) Save(e Entry) error {
	p, err := s.path(e.PodUID, e.Interface)
	if err != nil {
		return fmt.Errorf("saving checkpoint: %w", err)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding checkpoint for %s: %w", e.Interface, err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("saving checkpoint: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("saving checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename; best effort otherwise
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("saving checkpoint %s: %w", p, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("saving checkpoint %s: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("saving checkpoint %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("saving checkpoint %s: %w", p, err)
	}
	return nil
}

// Delete removes the entry for one interface (and the pod's directory once empty). A missing
// entry is not an error.
func (s *Store) Delete(podUID, iface string) error {
	p, err := s.path(podUID, iface)
	if err != nil {
		return fmt.Errorf("deleting checkpoint: %w", err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting checkpoint %s: %w", p, err)
	}
	// The pod's last entry gone: so goes what a crash in the middle of a Save left, and the
	// directory (removing it only succeeds when empty, which is the point).
	if entries, _ := filepath.Glob(filepath.Join(filepath.Dir(p), "*.json")); len(entries) == 0 {
		s.removeTempFiles(filepath.Dir(p))
	}
	_ = os.Remove(filepath.Dir(p))
	return nil
}

// List returns the pod's entries sorted by interface. An unreadable entry is an error: acting
// without it could leak an interface.
func (s *Store) List(podUID string) ([]Entry, error) {
	dir, err := s.path(podUID, "")
	if err != nil {
		return nil, fmt.Errorf("listing checkpoints: %w", err)
	}
	files, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing checkpoints in %s: %w", dir, err)
	}
	var out []Entry
	for _, f := range files {
		if f.IsDir() || !strings.HasSuffix(f.Name(), ".json") || strings.HasPrefix(f.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading checkpoint: %w", err)
		}
		var e Entry
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("decoding checkpoint %s: %w", filepath.Join(dir, f.Name()), err)
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Interface < out[j].Interface })
	return out, nil
}

// Pods returns the UIDs of pods that have entries.
func (s *Store) Pods() ([]string, error) {
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
