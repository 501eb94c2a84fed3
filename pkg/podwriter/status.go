// Package podwriter writes what netplug owns on a pod: its k8s.v1.cni.cncf.io/network-status
// entries and its finalizer. It applies netplug's changes on top of whatever the annotation
// holds at write time, so entries written by others (Multus at pod creation) are never lost, and
// it retries on a fresh pod when another writer got there first.
package podwriter

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/netplug/netplug/pkg/attachment"
)

// Change is one interface's new truth: Entry replaces (or adds) the entry of Interface, or,
// when Entry is nil, the entry is removed.
type Change struct {
	Interface string
	Entry     *nadv1.NetworkStatus
}

// Merge applies changes to entries. Entries keep their order; a new entry goes to the end;
// default-network entries are never touched.
func Merge(entries []nadv1.NetworkStatus, changes []Change) []nadv1.NetworkStatus {
	out := make([]nadv1.NetworkStatus, 0, len(entries)+len(changes))
	out = append(out, entries...)
	for _, c := range changes {
		i := indexOf(out, c.Interface)
		switch {
		case c.Entry == nil && i >= 0:
			out = append(out[:i], out[i+1:]...)
		case c.Entry != nil && i >= 0:
			out[i] = *c.Entry
		case c.Entry != nil:
			out = append(out, *c.Entry)
		}
	}
	return out
}

func indexOf(entries []nadv1.NetworkStatus, iface string) int {
	for i, e := range entries {
		if !e.Default && e.Interface == iface {
			return i
		}
	}
	return -1
}

// Writer patches the annotation through the API.
type Writer struct {
	client  kubernetes.Interface
	timeout time.Duration
}

// NewWriter returns a Writer whose every API call is bounded by timeout.
func NewWriter(client kubernetes.Interface, timeout time.Duration) *Writer {
	return &Writer{client: client, timeout: timeout}
}

// Update is one write of a pod: network-status changes and, with ReleaseFinalizer, the removal
// of netplug's finalizer, in one patch.
type Update struct {
	Changes          []Change
	ReleaseFinalizer bool
}

// Empty reports whether the update writes nothing to pod.
func (u Update) Empty(pod *corev1.Pod) bool {
	return len(u.Changes) == 0 && (!u.ReleaseFinalizer || !HasFinalizer(pod))
}

// Apply writes u on top of pod's network-status and finalizers with one merge patch guarded by
// the pod's resourceVersion. On a conflict it re-reads the pod and recomputes. It returns the
// pod as written (pod itself when there is nothing to write).
func (w *Writer) Apply(ctx context.Context, pod *corev1.Pod, u Update) (*corev1.Pod, error) {
	current := pod
	written := pod
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if u.Empty(current) {
			written = current
			return nil
		}
		patch, err := mergePatch(current, u)
		if err != nil {
			return err
		}
		callCtx, cancel := context.WithTimeout(ctx, w.timeout)
		defer cancel()
		written, err = w.client.CoreV1().Pods(pod.Namespace).Patch(callCtx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err == nil || !apierrors.IsConflict(err) {
			return err
		}
		fresh, getErr := w.client.CoreV1().Pods(pod.Namespace).Get(callCtx, pod.Name, metav1.GetOptions{})
		if getErr != nil {
			return getErr
		}
		if fresh.UID != pod.UID {
			return fmt.Errorf("pod %s/%s was replaced (uid %s, want %s)", pod.Namespace, pod.Name, fresh.UID, pod.UID)
		}
		current = fresh
		return err // the conflict: retry with the fresh pod
	})
	if err != nil {
		return nil, fmt.Errorf("writing network-status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return written, nil
}

func mergePatch(pod *corev1.Pod, u Update) ([]byte, error) {
	metadata := map[string]interface{}{
		// The resourceVersion turns the patch into a compare-and-swap: a concurrent writer
		// makes it fail with a conflict instead of being overwritten. That is also what makes
		// it safe to send the whole finalizers list.
		"resourceVersion": pod.ResourceVersion,
	}
	if len(u.Changes) > 0 {
		entries, err := attachment.ParseNetworkStatus(pod.Annotations[nadv1.NetworkStatusAnnot])
		if err != nil {
			return nil, err
		}
		merged := Merge(entries, u.Changes)
		if merged == nil {
			merged = []nadv1.NetworkStatus{}
		}
		// Compact, not indented like Multus: all of a pod's annotations share 256 KiB.
		value, err := json.Marshal(merged)
		if err != nil {
			return nil, fmt.Errorf("encoding network-status: %w", err)
		}
		metadata["annotations"] = map[string]string{nadv1.NetworkStatusAnnot: string(value)}
	}
	if u.ReleaseFinalizer && HasFinalizer(pod) {
		kept := slices.DeleteFunc(slices.Clone(pod.Finalizers), func(f string) bool { return f == Finalizer })
		if kept == nil {
			kept = []string{}
		}
		metadata["finalizers"] = kept
	}
	return json.Marshal(map[string]interface{}{"metadata": metadata})
}
