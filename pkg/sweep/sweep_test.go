package sweep

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/netplug/netplug/pkg/podwriter"
)

func pod(name, node string, finalizers ...string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name), Finalizers: finalizers},
		Spec: corev1.PodSpec{NodeName: node}}
}

func TestSweepFreesOnlyPodsOfDeletedNodes(t *testing.T) {
	kube := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "alive"}},
		pod("on-alive", "alive", podwriter.Finalizer),
		pod("on-gone", "gone", "other.io/keep", podwriter.Finalizer),
		pod("on-gone-not-ours", "gone", "other.io/keep"),
		pod("unscheduled", ""),
	)
	rec := record.NewFakeRecorder(10)
	s := &Sweeper{Kube: kube, Writer: podwriter.NewWriter(kube, time.Second), Recorder: rec}
	n, err := s.Sweep(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	for name, want := range map[string][]string{
		"on-alive":         {podwriter.Finalizer},
		"on-gone":          {"other.io/keep"},
		"on-gone-not-ours": {"other.io/keep"},
	} {
		p, _ := kube.CoreV1().Pods("ns").Get(context.Background(), name, metav1.GetOptions{})
		if strings.Join(p.Finalizers, ",") != strings.Join(want, ",") {
			t.Errorf("%s finalizers %v, want %v", name, p.Finalizers, want)
		}
	}
	if ev := <-rec.Events; !strings.Contains(ev, ReasonNodeGone) || !strings.Contains(ev, "gone") {
		t.Fatalf("event %q", ev)
	}
}

// The API server filters the pods: the list names every existing node (and the unscheduled) as
// excluded; past maxSelectorNodes nodes the sweep lists everything and filters itself.
func TestSweepListsOnlyPodsOfMissingNodes(t *testing.T) {
	kube := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "b"}})
	s := &Sweeper{Kube: kube, Writer: podwriter.NewWriter(kube, time.Second), Recorder: record.NewFakeRecorder(10)}
	if _, err := s.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got string
	for _, a := range kube.Actions() {
		if l, ok := a.(k8stesting.ListAction); ok && a.GetResource().Resource == "pods" {
			got = l.GetListRestrictions().Fields.String()
		}
	}
	if got != "spec.nodeName!=,spec.nodeName!=a,spec.nodeName!=b" {
		t.Fatalf("pod list field selector %q", got)
	}
	many := make([]corev1.Node, maxSelectorNodes+1)
	if sel := notOnNodes(many); sel != "" {
		t.Fatalf("selector for %d nodes: %q, want none", len(many), sel)
	}
}
