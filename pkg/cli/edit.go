package cli

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

// editFunc computes the annotation to write from the pod as it is now; write false means
// nothing needs writing. It is called again on a fresher pod after a conflict.
type editFunc func(pod *corev1.Pod) (after string, write bool, err error)

// editNetworks changes the pod's network-selection annotation: read, modify, then a merge patch
// whose resourceVersion makes it a compare-and-swap; a conflict (someone else wrote the pod in
// between) re-reads the pod and recomputes the edit. It returns the pod as written (or as read,
// when there was nothing to write).
func (c *common) editNetworks(ctx context.Context, pod *corev1.Pod, edit editFunc) (*corev1.Pod, error) {
	current := pod
	var written *corev1.Pod
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		after, write, err := edit(current)
		if err != nil {
			return err
		}
		if !write {
			written = current
			return nil
		}
		patch, err := networksPatch(current.ResourceVersion, after)
		if err != nil {
			return err
		}
		written, err = c.clients.Kube.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) {
			if apierrors.IsNotFound(err) {
				return exitErr(ExitNotFound, "pod %s/%s was deleted", pod.Namespace, pod.Name)
			}
			return apiErr(err, fmt.Sprintf("patching pod %s/%s", pod.Namespace, pod.Name))
		}
		fresh, getErr := c.getPod(ctx, pod.Namespace, pod.Name)
		if getErr != nil {
			return getErr
		}
		if fresh.UID != pod.UID {
			return exitErr(ExitError, "pod %s/%s was replaced by another pod of the same name while it was being edited", pod.Namespace, pod.Name)
		}
		current = fresh
		return err // the conflict: retry on the fresh pod
	})
	if apierrors.IsConflict(err) {
		return nil, exitErr(ExitError, "pod %s/%s kept changing while it was being edited; try again: %w", pod.Namespace, pod.Name, err)
	}
	if err != nil {
		return nil, err
	}
	return written, nil
}

// networksPatch is a merge patch that sets the annotation ("" removes it) if the pod is still
// at resourceVersion.
func networksPatch(resourceVersion, value string) ([]byte, error) {
	var v any = value
	if value == "" {
		v = nil
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"resourceVersion": resourceVersion,
			"annotations":     map[string]any{networksAnnotation: v},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the patch: %w", err)
	}
	return patch, nil
}

// edit is editNetworks for a command that may --wait: the events are snapshotted first, so the
// wait only counts what netplug says after this edit.
func (c *common) edit(ctx context.Context, pod *corev1.Pod, wait bool, edit editFunc) (*corev1.Pod, eventBaseline, error) {
	var baseline eventBaseline
	if wait {
		var err error
		if baseline, err = c.snapshotEvents(ctx, pod); err != nil {
			return nil, baseline, err
		}
	}
	written, err := c.editNetworks(ctx, pod, edit)
	return written, baseline, err
}
