package controller

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"github.com/netplug/netplug/pkg/attachment"
	corev1 "k8s.io/api/core/v1"
)

// selectionCache keeps each pod's parsed selection for its resourceVersion, so NAD events and
// resyncs do not re-parse unchanged annotations.
type selectionCache struct {
	mu      sync.Mutex
	entries map[types.UID]cachedSelection
}

type cachedSelection struct {
	resourceVersion string
	annotation      string
	sel             attachment.Selection
	err             error
}

func (s *selectionCache) get(pod *corev1.Pod, maxElements int) (attachment.Selection, error) {
	annotation := pod.Annotations[nadv1.NetworkAttachmentAnnot]
	s.mu.Lock()
	cached, ok := s.entries[pod.UID]
	s.mu.Unlock()
	if ok && cached.resourceVersion == pod.ResourceVersion && cached.annotation == annotation {
		return cached.sel, cached.err
	}
	sel, err := attachment.ParseSelectionWithin(annotation, pod.Namespace, maxElements)
	s.mu.Lock()
	if s.entries == nil {
		s.entries = map[types.UID]cachedSelection{}
	}
	s.entries[pod.UID] = cachedSelection{resourceVersion: pod.ResourceVersion, annotation: annotation, sel: sel, err: err}
	s.mu.Unlock()
	return sel, err
}

func (s *selectionCache) forget(uid types.UID) {
	s.mu.Lock()
	delete(s.entries, uid)
	s.mu.Unlock()
}

// creationSelections remembers, per pod, the networks its selection listed before Multus set the
// pod up (while it had no network-status): Multus attached those for the pod, so they are the
// pod's to remove even if it is edited before netplug first reconciles it while running.
//
// With dir set, each pod's set is also kept in <dir>/<uid>.json, so that a netplug restart
// between a pod's creation and an edit of its selection does not forget it.
type creationSelections struct {
	dir      string
	mu       sync.Mutex
	networks map[types.UID]map[string]bool
}

// saw records pod's selection if Multus has not set the pod up yet.
func (s *creationSelections) saw(pod *corev1.Pod, sel attachment.Selection) {
	if _, written := pod.Annotations[nadv1.NetworkStatusAnnot]; written || len(sel.Attachments) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.networks == nil {
		s.networks = map[types.UID]map[string]bool{}
	}
	known := s.networks[pod.UID]
	if known == nil {
		known = s.load(pod.UID)
		s.networks[pod.UID] = known
	}
	added := false
	for _, a := range sel.Attachments {
		if !known[a.NetworkName()] {
			known[a.NetworkName()], added = true, true
		}
	}
	if added {
		s.store(pod.UID, known)
	}
}

func (s *creationSelections) of(uid types.UID) map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if known, ok := s.networks[uid]; ok {
		return known
	}
	known := s.load(uid)
	if len(known) > 0 {
		if s.networks == nil {
			s.networks = map[types.UID]map[string]bool{}
		}
		s.networks[uid] = known
	}
	return known
}

func (s *creationSelections) forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.networks, uid)
	if p, ok := s.path(uid); ok {
		_ = os.Remove(p)
	}
}

// prune removes the files of pods that no longer exist (deleted while netplug was down).
func (s *creationSelections) prune(exists func(types.UID) bool) {
	if s.dir == "" {
		return
	}
	files, _ := os.ReadDir(s.dir)
	for _, f := range files {
		uid := types.UID(strings.TrimSuffix(f.Name(), ".json"))
		if strings.HasSuffix(f.Name(), ".json") && !exists(uid) {
			s.forget(uid)
		}
	}
}

func (s *creationSelections) path(uid types.UID) (string, bool) {
	if s.dir == "" || !uidName.MatchString(string(uid)) {
		return "", false
	}
	return filepath.Join(s.dir, string(uid)+".json"), true
}

func (s *creationSelections) load(uid types.UID) map[string]bool {
	known := map[string]bool{}
	if p, ok := s.path(uid); ok {
		if data, err := os.ReadFile(p); err == nil {
			var list []string
			if json.Unmarshal(data, &list) == nil {
				for _, n := range list {
					known[n] = true
				}
			}
		}
	}
	return known
}

// store writes the set atomically; best effort: without it only a restart forgets.
func (s *creationSelections) store(uid types.UID, known map[string]bool) {
	p, ok := s.path(uid)
	if !ok {
		return
	}
	list := make([]string, 0, len(known))
	for n := range known {
		list = append(list, n)
	}
	slices.Sort(list)
	data, _ := json.Marshal(list)
	if os.MkdirAll(s.dir, 0o700) != nil {
		return
	}
	tmp := p + ".tmp"
	if os.WriteFile(tmp, data, 0o600) == nil {
		_ = os.Rename(tmp, p)
	}
}

// uidName admits pod UIDs as file names, never a path separator.
var uidName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-]{0,63}$`)
