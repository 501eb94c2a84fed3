package podwriter

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/netplug/netplug/pkg/apitest"
)

func entry(name, iface string) nadv1.NetworkStatus {
	return nadv1.NetworkStatus{Name: name, Interface: iface}
}

func ifaces(entries []nadv1.NetworkStatus) string {
	var s []string
	for _, e := range entries {
		s = append(s, e.Name+"@"+e.Interface)
	}
	return strings.Join(s, ",")
}

func TestMerge(t *testing.T) {
	base := []nadv1.NetworkStatus{{Name: "podnet", Interface: "eth0", Default: true}, entry("ns/a", "net1"), entry("ns/b", "net2")}
	upd := entry("ns/c", "net1")
	add := entry("ns/d", "net3")
	got := Merge(base, []Change{{Interface: "net2"}, {Interface: "net1", Entry: &upd}, {Interface: "net3", Entry: &add}, {Interface: "eth0"}, {Interface: "net9"}})
	if want := "podnet@eth0,ns/c@net1,ns/d@net3"; ifaces(got) != want {
		t.Fatalf("Merge = %s, want %s", ifaces(got), want)
	}
	if ifaces(base) != "podnet@eth0,ns/a@net1,ns/b@net2" {
		t.Fatalf("Merge modified its input: %s", ifaces(base))
	}
}

func podWithStatus(t *testing.T, rv string, entries ...nadv1.NetworkStatus) *corev1.Pod {
	t.Helper()
	data, _ := json.Marshal(entries)
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1", ResourceVersion: rv,
		Annotations: map[string]string{nadv1.NetworkStatusAnnot: string(data)}}}
}

func statusOf(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	var entries []nadv1.NetworkStatus
	if err := json.Unmarshal([]byte(pod.Annotations[nadv1.NetworkStatusAnnot]), &entries); err != nil {
		t.Fatal(err)
	}
	return ifaces(entries)
}

func TestApplyWritesOnePatch(t *testing.T) {
	pod := podWithStatus(t, "1", entry("podnet", "eth0"))
	client := fake.NewClientset(pod)
	add := entry("ns/a", "net1")
	got, err := NewWriter(client, time.Second).Apply(context.Background(), pod, Update{Changes: []Change{{Interface: "net1", Entry: &add}}})
	if err != nil {
		t.Fatal(err)
	}
	if s := statusOf(t, got); s != "podnet@eth0,ns/a@net1" {
		t.Fatalf("written status %s", s)
	}
	var patches int
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" {
			patches++
		} else {
			t.Errorf("unexpected %s", a.GetVerb())
		}
	}
	if patches != 1 {
		t.Fatalf("%d patches, want 1", patches)
	}
}

// Another writer adds an entry between our read and our write: the conflict makes us re-read,
// and both entries survive.
func TestApplyRecomputesOnConflict(t *testing.T) {
	stale := podWithStatus(t, "1", entry("podnet", "eth0"))
	fresh := podWithStatus(t, "2", entry("podnet", "eth0"), entry("ns/other", "net7"))
	client := fake.NewClientset(fresh)
	conflicts := 0
	client.PrependReactor("patch", "pods", func(action k8stesting.Action) (bool, runtime.Object, error) {
		patch := string(action.(k8stesting.PatchAction).GetPatch())
		if strings.Contains(patch, `"resourceVersion":"1"`) {
			conflicts++
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "p", errors.New("rv changed"))
		}
		if !strings.Contains(patch, "net7") {
			t.Errorf("retry patch lost the other writer's entry: %s", patch)
		}
		return false, nil, nil
	})
	add := entry("ns/a", "net1")
	got, err := NewWriter(client, time.Second).Apply(context.Background(), stale, Update{Changes: []Change{{Interface: "net1", Entry: &add}}})
	if err != nil {
		t.Fatal(err)
	}
	if conflicts != 1 {
		t.Fatalf("%d conflicts, want 1", conflicts)
	}
	if s := statusOf(t, got); s != "podnet@eth0,ns/other@net7,ns/a@net1" {
		t.Fatalf("written status %s", s)
	}
}

func TestApplyGivesUpWhenThePodWasReplaced(t *testing.T) {
	stale := podWithStatus(t, "1")
	replaced := podWithStatus(t, "5")
	replaced.UID = "u2"
	client := fake.NewClientset(replaced)
	client.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "p", errors.New("rv changed"))
	})
	_, err := NewWriter(client, time.Second).Apply(context.Background(), stale, Update{Changes: []Change{{Interface: "net1"}}})
	if err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("err = %v, want replaced", err)
	}
}

func TestApplyRejectsMalformedStatus(t *testing.T) {
	pod := podWithStatus(t, "1")
	pod.Annotations[nadv1.NetworkStatusAnnot] = "{"
	_, err := NewWriter(fake.NewClientset(pod), time.Second).Apply(context.Background(), pod, Update{Changes: []Change{{Interface: "net1"}}})
	if err == nil || !strings.Contains(err.Error(), "malformed network-status") {
		t.Fatalf("err = %v", err)
	}
}

func TestApplyEmptyStatusIsAnEmptyList(t *testing.T) {
	pod := podWithStatus(t, "1", entry("ns/a", "net1"))
	client := fake.NewClientset(pod)
	got, err := NewWriter(client, time.Second).Apply(context.Background(), pod, Update{Changes: []Change{{Interface: "net1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if v := got.Annotations[nadv1.NetworkStatusAnnot]; v != "[]" {
		t.Fatalf("status = %q, want []", v)
	}
}

func TestFinalizers(t *testing.T) {
	pod := podWithStatus(t, "1")
	pod.Finalizers = []string{"other.io/keep"}
	client := fake.NewClientset(pod)
	w := NewWriter(client, time.Second)
	got, err := w.AddFinalizer(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	if !HasFinalizer(got) || len(got.Finalizers) != 2 {
		t.Fatalf("finalizers after add: %v", got.Finalizers)
	}
	if err := w.RemoveFinalizer(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	after, _ := client.CoreV1().Pods("ns").Get(context.Background(), "p", metav1.GetOptions{})
	if HasFinalizer(after) || len(after.Finalizers) != 1 || after.Finalizers[0] != "other.io/keep" {
		t.Fatalf("finalizers after remove: %v", after.Finalizers)
	}
	if err := client.CoreV1().Pods("ns").Delete(context.Background(), "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := w.RemoveFinalizer(context.Background(), after); err != nil {
		t.Fatalf("removing from a deleted pod: %v", err)
	}
}

// The status and the finalizer's release go out in one patch, compact, and the finalizer list
// keeps everyone else's finalizers.
func TestApplyReleasesTheFinalizerInTheStatusPatch(t *testing.T) {
	pod := podWithStatus(t, "1", entry("podnet", "eth0"), entry("ns/a", "net1"))
	pod.Finalizers = []string{"other.io/keep", Finalizer}
	client := fake.NewClientset()
	apitest.EnforceResourceVersion(client, "pods")
	pod, _ = client.CoreV1().Pods("ns").Create(context.Background(), pod, metav1.CreateOptions{})
	client.ClearActions()
	got, err := NewWriter(client, time.Second).Apply(context.Background(), pod, Update{Changes: []Change{{Interface: "net1"}}, ReleaseFinalizer: true})
	if err != nil {
		t.Fatal(err)
	}
	if HasFinalizer(got) || !slices.Equal(got.Finalizers, []string{"other.io/keep"}) {
		t.Fatalf("finalizers %v", got.Finalizers)
	}
	if v := got.Annotations[nadv1.NetworkStatusAnnot]; v != `[{"name":"podnet","interface":"eth0","dns":{}}]` {
		t.Fatalf("status %q is not compact or lost the default entry", v)
	}
	if n := len(client.Actions()); n != 1 {
		t.Fatalf("%d API calls, want one patch: %v", n, client.Actions())
	}
}

// With the API server's compare-and-swap: a write based on an old read conflicts, is
// recomputed on the fresh pod, and keeps the other writer's change.
func TestApplyAgainstEnforcedResourceVersions(t *testing.T) {
	client := fake.NewClientset()
	apitest.EnforceResourceVersion(client, "pods")
	if _, err := client.CoreV1().Pods("ns").Create(context.Background(), podWithStatus(t, "", entry("podnet", "eth0")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stale, _ := client.CoreV1().Pods("ns").Get(context.Background(), "p", metav1.GetOptions{})
	other := stale.DeepCopy()
	other.Annotations[nadv1.NetworkStatusAnnot] = `[{"name":"podnet","interface":"eth0"},{"name":"ns/other","interface":"net7"}]`
	if _, err := client.CoreV1().Pods("ns").Update(context.Background(), other, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Pods("ns").Update(context.Background(), stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("a stale update was not refused: %v", err)
	}
	add := entry("ns/a", "net1")
	got, err := NewWriter(client, time.Second).Apply(context.Background(), stale, Update{Changes: []Change{{Interface: "net1", Entry: &add}}})
	if err != nil {
		t.Fatal(err)
	}
	if s := statusOf(t, got); s != "podnet@eth0,ns/other@net7,ns/a@net1" {
		t.Fatalf("written status %s", s)
	}
	if got.ResourceVersion == stale.ResourceVersion {
		t.Fatal("the write did not get a new resourceVersion")
	}
}

func TestApplyWithNothingToWriteCallsNothing(t *testing.T) {
	pod := podWithStatus(t, "1")
	client := fake.NewClientset(pod)
	got, err := NewWriter(client, time.Second).Apply(context.Background(), pod, Update{ReleaseFinalizer: true})
	if err != nil || got != pod || len(client.Actions()) != 0 {
		t.Fatalf("Apply = %v, %v; actions %v", got, err, client.Actions())
	}
}
