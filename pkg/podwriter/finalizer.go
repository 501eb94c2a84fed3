package podwriter

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Finalizer keeps a pod object until netplug has released the interfaces it plugged into it.
// Multus's /delegate DEL looks the pod up and fails once the object is gone, so the release must
// happen while the pod is terminating.
const Finalizer = "netplug.io/release-interfaces"

// HasFinalizer reports whether pod carries netplug's finalizer.
func HasFinalizer(pod *corev1.Pod) bool { return slices.Contains(pod.Finalizers, Finalizer) }

// AddFinalizer adds netplug's finalizer (a strategic merge of the finalizers list, so others'
// finalizers are kept) and returns the pod as written.
func (w *Writer) AddFinalizer(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	return w.patchFinalizers(ctx, pod, map[string]interface{}{"finalizers": []string{Finalizer}})
}

// RemoveFinalizer removes netplug's finalizer. A pod that is already gone is not an error.
func (w *Writer) RemoveFinalizer(ctx context.Context, pod *corev1.Pod) error {
	_, err := w.patchFinalizers(ctx, pod, map[string]interface{}{"$deleteFromPrimitiveList/finalizers": []string{Finalizer}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (w *Writer) patchFinalizers(ctx context.Context, pod *corev1.Pod, metadata map[string]interface{}) (*corev1.Pod, error) {
	// The UID precondition makes sure a new pod of the same name is never touched.
	metadata["uid"] = pod.UID
	patch, err := json.Marshal(map[string]interface{}{"metadata": metadata})
	if err != nil {
		return nil, err
	}
	callCtx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	written, err := w.client.CoreV1().Pods(pod.Namespace).Patch(callCtx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating the finalizers of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return written, nil
}
