package cli

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// getPod reads the pod, with the errors a user can act on.
func (c *common) getPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	pod, err := c.clients.Kube.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, exitErr(ExitNotFound, "pod %s/%s not found", namespace, name)
	}
	if err != nil {
		return nil, apiErr(err, fmt.Sprintf("reading pod %s/%s", namespace, name))
	}
	return pod, nil
}

// checkPluggable refuses what netplug refuses about a pod as a whole.
func checkPluggable(pod *corev1.Pod) error {
	switch {
	case pod.Spec.HostNetwork:
		return refused("pod %s/%s uses the host network: netplug cannot plug secondary networks into it", pod.Namespace, pod.Name)
	case pod.DeletionTimestamp != nil:
		return refused("pod %s/%s is being deleted", pod.Namespace, pod.Name)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return refused("pod %s/%s has terminated (%s)", pod.Namespace, pod.Name, pod.Status.Phase)
	}
	return nil
}

// checkNAD makes sure the NetworkAttachmentDefinition exists. When the user may not read NADs
// it only warns: netplug reads them with its own rights.
func (c *common) checkNAD(ctx context.Context, namespace, name string) error {
	_, err := c.clients.NADs.K8sCniCncfIoV1().NetworkAttachmentDefinitions(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return exitErr(ExitNotFound, "NetworkAttachmentDefinition %s/%s not found (kubectl get network-attachment-definitions -n %s)", namespace, name, namespace)
	case apierrors.IsForbidden(err):
		c.warnf("cannot check that NetworkAttachmentDefinition %s/%s exists: permission denied", namespace, name)
		return nil
	default:
		return apiErr(err, fmt.Sprintf("reading NetworkAttachmentDefinition %s/%s", namespace, name))
	}
}

// checkNetplugOnNode makes sure a netplug pod runs on the pod's node: without one the edit is
// never acted on. A pod not yet scheduled is fine (netplug acts once it runs), and so is not
// being allowed to look (a warning).
func (c *common) checkNetplugOnNode(ctx context.Context, pod *corev1.Pod) error {
	node := pod.Spec.NodeName
	if node == "" {
		c.warnf("pod %s/%s is not scheduled yet: netplug acts once it runs", pod.Namespace, pod.Name)
		return nil
	}
	list, err := c.clients.Kube.CoreV1().Pods(c.netplugNS).List(ctx, metav1.ListOptions{
		LabelSelector: netplugSelector,
		FieldSelector: "spec.nodeName=" + node,
	})
	if apierrors.IsForbidden(err) {
		c.warnf("cannot check that netplug runs on node %s: permission denied to list pods in %s", node, c.netplugNS)
		return nil
	}
	if err != nil {
		return apiErr(err, "listing netplug pods in "+c.netplugNS)
	}
	var live, ready []string
	for _, p := range list.Items {
		if p.Spec.NodeName != node || p.DeletionTimestamp != nil {
			continue
		}
		live = append(live, p.Name)
		if podReady(&p) {
			ready = append(ready, p.Name)
		}
	}
	if len(live) == 0 {
		return exitErr(ExitNoNetplug, "no netplug pod runs on node %s of pod %s/%s (looked for pods labelled %s in namespace %s): nothing would act on the change",
			node, pod.Namespace, pod.Name, netplugSelector, c.netplugNS)
	}
	if len(ready) == 0 {
		c.warnf("the netplug pod on node %s (%s) is not ready: the change waits for it", node, strings.Join(live, ", "))
	}
	return nil
}

func podReady(pod *corev1.Pod) bool {
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}
