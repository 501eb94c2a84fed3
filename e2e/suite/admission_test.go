//go:build e2e

package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/netplug/netplug/e2e/framework"
)

const (
	// admissionPolicy is the ValidatingAdmissionPolicy (and its binding) of manifests/base.
	admissionPolicy = "netplug-pod-writes"
	// netplugServiceAccount is the ServiceAccount the DaemonSet runs as.
	netplugServiceAccount = "netplug"
	// netplugFinalizer is the finalizer netplug puts on the pods it plugged (pkg/podwriter).
	netplugFinalizer = "netplug.io/release-interfaces"
	// nodeNameExtra is the user extra a pod-bound ServiceAccount token carries (Kubernetes >= 1.30).
	nodeNameExtra = "authentication.kubernetes.io/node-name"
	// ghostNode is a node that does not exist: a pod bound to it never runs, and its object is all
	// this scenario needs.
	ghostNode = "ghost-node"
)

// TestAdmissionPolicy checks, with netplug's own credentials, that the ValidatingAdmissionPolicy
// shipped in the manifests narrows what its token can write to a pod (issue item 13):
//   - a token bound to the running netplug pod (it carries that pod's node in its user extra) may
//     change network-status on a pod of its node;
//   - it may not change that pod's labels, nor another annotation;
//   - it may not change network-status on a pod of another node ("ghost-node"), but it may remove
//     its finalizer from it (the sweep of deleted Nodes);
//   - a netplug token bound to no pod (no node in its extra) may write nothing at all.
//
// It runs on its own (not in TestNetplug's parallel group): nothing else here writes with
// netplug's token, and it disrupts nothing.
func TestAdmissionPolicy(t *testing.T) {
	s := newScenario(t, "admission")
	ctx, cancel := s.Ctx()
	defer cancel()
	if _, err := s.Kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, admissionPolicy, metav1.GetOptions{}); err != nil {
		t.Fatalf("the ValidatingAdmissionPolicy %s is not installed (manifests/base/admission-policy.yaml): %v", admissionPolicy, err)
	}
	if _, err := s.Kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, admissionPolicy, metav1.GetOptions{}); err != nil {
		t.Fatalf("the ValidatingAdmissionPolicyBinding %s is not installed: %v", admissionPolicy, err)
	}
	netplugPod, err := s.NetplugPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	netplug := s.netplugClient(netplugPod)
	unbound := s.netplugClient(nil)

	own := s.RunningPod("own")
	ghost := s.NewPod("ghost")
	ghost.Spec.NodeName = ghostNode
	ghost.Finalizers = []string{netplugFinalizer}
	ghost = s.CreatePod(ghost)
	// A finalizer left on it would hold the namespace's deletion: strip it before the scenario's
	// own clean-up (cleanups run last registered, first).
	t.Cleanup(func() { s.stripFinalizer(ghost.Name) })

	// The API server learns of a new policy through an informer, a moment after the deploy: wait
	// until it refuses a token bound to no pod even a no-op patch (harmless while it is allowed).
	framework.WaitUntil(t, framework.PlugTimeout, "the admission policy to be in force", func(context.Context) (bool, string) {
		err := patchAsNetplug(unbound, own, []byte(`{"metadata":{}}`))
		if apierrors.IsForbidden(err) {
			return true, ""
		}
		return false, fmt.Sprintf("a no-op patch with a token bound to no pod: %v", err)
	})

	// Own node, network-status: allowed. The entries are rewritten in another JSON layout, so the
	// value changes while what it says does not (netplug reads the same interfaces from it).
	status := s.reformattedStatus(own)
	if err := patchAsNetplug(netplug, own, annotationPatch(nadv1.NetworkStatusAnnot, status)); err != nil {
		t.Fatalf("netplug's token changing network-status of pod %s/%s on its own node %s: %v, want it allowed",
			s.Ns, own.Name, s.Env.NodeName, err)
	}
	if got := s.MustGetPod(own.Name).Annotations[nadv1.NetworkStatusAnnot]; got != status {
		t.Errorf("network-status of %s/%s after netplug's patch is %q, want %q", s.Ns, own.Name, got, status)
	}

	// Own node, labels: denied.
	labels := []byte(`{"metadata":{"labels":{"app":"stolen-token"}}}`)
	expectRefused(t, "netplug's token changing the labels of an own-node pod", patchAsNetplug(netplug, own, labels), "labels")
	if got := s.MustGetPod(own.Name).Labels["app"]; got != "netplug-e2e" {
		t.Errorf("label app of %s/%s is %q after the refused patch, want netplug-e2e", s.Ns, own.Name, got)
	}

	// Own node, another annotation: denied.
	expectRefused(t, "netplug's token changing another annotation of an own-node pod",
		patchAsNetplug(netplug, own, annotationPatch(nadv1.NetworkAttachmentAnnot, "stolen")), nadv1.NetworkAttachmentAnnot)

	// Another node, network-status: denied.
	expectRefused(t, "netplug's token changing network-status of a pod of "+ghostNode,
		patchAsNetplug(netplug, ghost, annotationPatch(nadv1.NetworkStatusAnnot, "[]")), ghostNode)

	// A token bound to no pod: even network-status on the own node is refused.
	expectRefused(t, "a netplug token bound to no pod changing network-status",
		patchAsNetplug(unbound, own, annotationPatch(nadv1.NetworkStatusAnnot, status)), nodeNameExtra)

	// Another node, removing netplug's finalizer: allowed (the sweep frees pods of deleted Nodes).
	// A JSON patch, test-guarded by index, as hack/run/undeploy.sh does. netplug's own sweep may get
	// there first (ghost-node has no Node object): then the test op fails, and the finalizer is gone.
	fresh := s.MustGetPod(ghost.Name)
	if i := slices.Index(fresh.Finalizers, netplugFinalizer); i >= 0 {
		patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/finalizers/%d","value":%q},{"op":"remove","path":"/metadata/finalizers/%d"}]`,
			i, netplugFinalizer, i)
		ctx, cancel := s.Ctx()
		_, err := netplug.CoreV1().Pods(s.Ns).Patch(ctx, ghost.Name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
		cancel()
		if err != nil && !apierrors.IsInvalid(err) {
			t.Errorf("netplug's token removing its finalizer from a pod of %s: %v, want it allowed", ghostNode, err)
		}
	}
	if fin := s.MustGetPod(ghost.Name).Finalizers; slices.Contains(fin, netplugFinalizer) {
		t.Errorf("pod %s/%s still has finalizers %v", s.Ns, ghost.Name, fin)
	}
}

// netplugClient returns a client that authenticates with a fresh token of netplug's
// ServiceAccount, bound to pod (so that it carries the pod's node, as the token kubelet projects
// into netplug's pod does), or bound to nothing when pod is nil. It fails the test when a
// pod-bound token does not carry the node (a cluster older than 1.30, or the feature off).
func (s *scenario) netplugClient(pod *corev1.Pod) kubernetes.Interface {
	s.T.Helper()
	ctx, cancel := s.Ctx()
	defer cancel()
	expiry := int64(600)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tok, err := s.Kube.CoreV1().ServiceAccounts(framework.NetplugNamespace).CreateToken(ctx, netplugServiceAccount, req, metav1.CreateOptions{})
	if err != nil {
		s.T.Fatalf("requesting a token of ServiceAccount %s/%s: %v", framework.NetplugNamespace, netplugServiceAccount, err)
	}
	admin, err := clientcmd.BuildConfigFromFlags("", s.Env.Kubeconfig)
	if err != nil {
		s.T.Fatalf("loading %s: %v", s.Env.Kubeconfig, err)
	}
	rc := rest.AnonymousClientConfig(admin) // the server and its CA, none of the admin's credentials
	rc.BearerToken = tok.Status.Token
	rc.Timeout = framework.ApiTimeout
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		s.T.Fatalf("creating a client with netplug's token: %v", err)
	}
	review, err := kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		s.T.Fatalf("SelfSubjectReview with netplug's token: %v", err)
	}
	if want := "system:serviceaccount:" + framework.NetplugNamespace + ":" + netplugServiceAccount; review.Status.UserInfo.Username != want {
		s.T.Fatalf("netplug's token authenticates as %q, want %q", review.Status.UserInfo.Username, want)
	}
	nodes := review.Status.UserInfo.Extra[nodeNameExtra]
	switch {
	case pod == nil && len(nodes) != 0:
		s.T.Fatalf("a token bound to no pod carries %s=%v", nodeNameExtra, nodes)
	case pod != nil && !slices.Equal(nodes, []string{pod.Spec.NodeName}):
		s.T.Fatalf("a token bound to pod %s/%s carries %s=%v, want [%s] (Kubernetes >= 1.30 adds it)",
			pod.Namespace, pod.Name, nodeNameExtra, nodes, pod.Spec.NodeName)
	}
	return kube
}

// patchAsNetplug merge-patches pod with client (netplug's token).
func patchAsNetplug(client kubernetes.Interface, pod *corev1.Pod, patch []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), framework.ApiTimeout)
	defer cancel()
	_, err := client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// annotationPatch is a merge patch that sets one annotation.
func annotationPatch(key, value string) []byte {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	return patch
}

// expectRefused fails the test unless err is the admission policy's refusal (403) and its message
// names what was refused.
func expectRefused(t *testing.T, what string, err error, names string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s was allowed, want it refused by the ValidatingAdmissionPolicy %s", what, admissionPolicy)
	case !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), admissionPolicy):
		t.Errorf("%s: %v, want a 403 from the ValidatingAdmissionPolicy %s", what, err, admissionPolicy)
	case !strings.Contains(err.Error(), names):
		t.Errorf("%s: refused with %q, which does not name %q", what, err, names)
	default:
		t.Logf("%s: refused: %v", what, err)
	}
}

// reformattedStatus returns the pod's network-status entries in another JSON layout than the one
// the annotation has now: a different value that says the same.
func (s *scenario) reformattedStatus(pod *corev1.Pod) string {
	s.T.Helper()
	entries, err := framework.NetworkStatus(s.MustGetPod(pod.Name))
	if err != nil {
		s.T.Fatalf("reading network-status of %s/%s: %v", s.Ns, pod.Name, err)
	}
	if entries == nil {
		entries = []nadv1.NetworkStatus{}
	}
	current := s.MustGetPod(pod.Name).Annotations[nadv1.NetworkStatusAnnot]
	for _, indent := range []string{"", "  ", "    "} {
		var b []byte
		if indent == "" {
			b, err = json.Marshal(entries)
		} else {
			b, err = json.MarshalIndent(entries, "", indent)
		}
		if err != nil {
			s.T.Fatalf("encoding network-status: %v", err)
		}
		if string(b) != current {
			return string(b)
		}
	}
	s.T.Fatalf("no other layout of network-status %q", current)
	return ""
}

// stripFinalizer removes netplug's finalizer from the pod with the suite's own credentials.
func (s *scenario) stripFinalizer(name string) {
	ctx, cancel := s.Ctx()
	defer cancel()
	pod, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return
	}
	i := slices.Index(pod.Finalizers, netplugFinalizer)
	if i < 0 {
		return
	}
	patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/finalizers/%d","value":%q},{"op":"remove","path":"/metadata/finalizers/%d"}]`,
		i, netplugFinalizer, i)
	if _, err := s.Kube.CoreV1().Pods(s.Ns).Patch(ctx, name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		s.T.Logf("cleanup: removing %s from pod %s/%s: %v", netplugFinalizer, s.Ns, name, err)
	}
}
