package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadfake "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const (
	testNS   = "ns"
	testNode = "node1"
	testUID  = types.UID("uid-p")
)

var podsResource = schema.GroupResource{Resource: "pods"}

// world is a fake cluster: a running pod "p" on testNode, netplug on that node, and NAD "br"
// (and "other/br2").
type world struct {
	t     *testing.T
	kube  *kubefake.Clientset
	nads  *nadfake.Clientset
	flags *genericclioptions.ConfigFlags
	// podWatch and eventWatch, when set, are what watches of pods and events return.
	podWatch, eventWatch *watch.RaceFreeFakeWatcher
}

type podOption func(*corev1.Pod)

func withNetworks(v string) podOption {
	return func(p *corev1.Pod) { p.Annotations[networksAnnotation] = v }
}

func withStatus(entries ...nadv1.NetworkStatus) podOption {
	return func(p *corev1.Pod) { p.Annotations[statusAnnotation] = statusJSON(entries...) }
}

func statusJSON(entries ...nadv1.NetworkStatus) string {
	all := append([]nadv1.NetworkStatus{{Name: "podnet", Interface: "eth0", IPs: []string{"10.244.0.5"}, Default: true}}, entries...)
	raw, err := json.Marshal(all)
	if err != nil {
		panic(err)
	}
	return string(raw)
}

func testPod(name string, opts ...podOption) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, UID: types.UID("uid-" + name), ResourceVersion: "10",
			Labels: map[string]string{"app": "web"}, Annotations: map[string]string{}},
		Spec:   corev1.PodSpec{NodeName: testNode},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func netplugPod(node string, ready bool) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "netplug-" + node, Namespace: defaultNetplugNS, Labels: map[string]string{"app.kubernetes.io/name": "netplug"}},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
}

func nad(ns, name string) *nadv1.NetworkAttachmentDefinition {
	return &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: `{"cniVersion":"0.4.0","type":"bridge"}`}}
}

// newWorld builds the fake cluster with pod (testPod("p") when nil) and extra objects.
func newWorld(t *testing.T, pod *corev1.Pod, extra ...runtime.Object) *world {
	t.Helper()
	if pod == nil {
		pod = testPod("p")
	}
	objs := append([]runtime.Object{pod, netplugPod(testNode, true)}, extra...)
	w := &world{t: t, kube: kubefake.NewClientset(objs...), nads: nadfake.NewSimpleClientset()}
	// Created through the client: the tracker would guess the resource name wrong from the kind.
	for _, n := range []*nadv1.NetworkAttachmentDefinition{nad(testNS, "br"), nad(testNS, "br2"), nad("other", "br2")} {
		if _, err := w.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(n.Namespace).Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *world) Clients() (*Clients, error) { return &Clients{Kube: w.kube, NADs: w.nads}, nil }

func (w *world) Namespace() (string, error) {
	if w.flags != nil && w.flags.Namespace != nil && *w.flags.Namespace != "" {
		return *w.flags.Namespace, nil
	}
	return testNS, nil
}

// fakeWatches makes watches of pods and events return watchers the test feeds.
func (w *world) fakeWatches() {
	w.podWatch, w.eventWatch = watch.NewRaceFreeFake(), watch.NewRaceFreeFake()
	w.kube.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) { return true, w.podWatch, nil })
	w.kube.PrependWatchReactor("events", func(k8stesting.Action) (bool, watch.Interface, error) { return true, w.eventWatch, nil })
}

// result of one run of the command.
type result struct {
	out, err string
	code     int
}

func (w *world) run(args ...string) result {
	w.t.Helper()
	var out, errOut bytes.Buffer
	w.flags = genericclioptions.NewConfigFlags(true)
	cmd := NewCommand(Options{
		Streams:     genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
		ConfigFlags: w.flags, Factory: w, Version: "v1.2.3",
	})
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		errOut.WriteString("error: " + err.Error() + "\n")
	}
	return result{out: out.String(), err: errOut.String(), code: ExitCode(err)}
}

func (w *world) pod(name string) *corev1.Pod {
	w.t.Helper()
	p, err := w.kube.CoreV1().Pods(testNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		w.t.Fatalf("getting pod %s: %v", name, err)
	}
	return p
}

func (w *world) networks(name string) string { return w.pod(name).Annotations[networksAnnotation] }

// patches counts the patches of pods.
func (w *world) patches() int {
	n := 0
	for _, a := range w.kube.Actions() {
		if a.GetVerb() == "patch" && a.GetResource().Resource == "pods" {
			n++
		}
	}
	return n
}

// enforceResourceVersion makes pod patches behave like the API server's: a patch whose
// metadata.resourceVersion is not the stored one is a Conflict; one that applies bumps it.
// Only patches of metadata.annotations are supported, which is all the CLI writes.
func (w *world) enforceResourceVersion() {
	var mu sync.Mutex
	w.kube.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		pa := a.(k8stesting.PatchAction)
		var patch struct {
			Metadata struct {
				ResourceVersion string             `json:"resourceVersion"`
				Annotations     map[string]*string `json:"annotations"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(pa.GetPatch(), &patch); err != nil {
			return true, nil, err
		}
		obj, err := w.kube.Tracker().Get(a.GetResource(), a.GetNamespace(), pa.GetName())
		if err != nil {
			return true, nil, err
		}
		pod := obj.(*corev1.Pod).DeepCopy()
		if patch.Metadata.ResourceVersion != "" && patch.Metadata.ResourceVersion != pod.ResourceVersion {
			return true, nil, apierrors.NewConflict(podsResource, pod.Name,
				fmt.Errorf("the object has been modified (resourceVersion %s, patch has %s)", pod.ResourceVersion, patch.Metadata.ResourceVersion))
		}
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		for k, v := range patch.Metadata.Annotations {
			if v == nil {
				delete(pod.Annotations, k)
			} else {
				pod.Annotations[k] = *v
			}
		}
		bump(pod)
		if err := w.kube.Tracker().Update(a.GetResource(), pod, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, pod, nil
	})
}

func bump(pod *corev1.Pod) {
	rv, _ := strconv.Atoi(pod.ResourceVersion)
	pod.ResourceVersion = strconv.Itoa(rv + 1)
}

// otherWriter changes the pod behind the CLI's back, as another client would.
func (w *world) otherWriter(name string, change func(*corev1.Pod)) {
	w.t.Helper()
	obj, err := w.kube.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), testNS, name)
	if err != nil {
		w.t.Fatal(err)
	}
	pod := obj.(*corev1.Pod).DeepCopy()
	change(pod)
	bump(pod)
	if err := w.kube.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), pod, testNS); err != nil {
		w.t.Fatal(err)
	}
}

// warning is a Warning event of netplug's on pod.
func warning(pod *corev1.Pod, name, reason, message string) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: pod.Namespace, ResourceVersion: "100"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Type:           corev1.EventTypeWarning, Reason: reason, Message: message, Count: 1,
		Source:        corev1.EventSource{Component: netplugComponent},
		LastTimestamp: metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)),
	}
}

func normalEvent(pod *corev1.Pod, name, reason, message string, at time.Time) *corev1.Event {
	e := warning(pod, name, reason, message)
	e.Type, e.LastTimestamp = corev1.EventTypeNormal, metav1.NewTime(at)
	return e
}

// expect checks a run's exit code and that its output contains each of want.
func (r result) expect(t *testing.T, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.out, r.err)
	}
	for _, s := range want {
		if !strings.Contains(r.out+r.err, s) {
			t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", s, r.out, r.err)
		}
	}
}

func errorsNew(s string) error { return errors.New(s) }
