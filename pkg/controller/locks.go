package controller

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"github.com/netplug/netplug/pkg/attachment"
	corev1 "k8s.io/api/core/v1"
)

// keyLocks is a mutex per pod, held for a whole reconcile: a pod can be in both queues at once
// while it changes state (a plug under way when its deletion arrives).
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int
}

func (l *keyLocks) lock(k string) func() {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*keyLock{}
	}
	kl := l.locks[k]
	if kl == nil {
		kl = &keyLock{}
		l.locks[k] = kl
	}
	kl.users++
	l.mu.Unlock()
	kl.Lock()
	return func() {
		kl.Unlock()
		l.mu.Lock()
		if kl.users--; kl.users == 0 {
			delete(l.locks, k)
		}
		l.mu.Unlock()
	}
}

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
type creationSelections struct {
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
	if s.networks[pod.UID] == nil {
		s.networks[pod.UID] = map[string]bool{}
	}
	for _, a := range sel.Attachments {
		s.networks[pod.UID][a.NetworkName()] = true
	}
}

func (s *creationSelections) of(uid types.UID) map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.networks[uid]
}

func (s *creationSelections) forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.networks, uid)
}
