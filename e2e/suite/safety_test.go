//go:build e2e

package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/netplug/netplug/e2e/framework"
	"github.com/netplug/netplug/pkg/multus"
)

// releaseFinalizer is netplug's finalizer (pkg/podwriter).
const releaseFinalizer = "netplug.io/release-interfaces"

// TestSafety: what a user types can never hurt a pod, and nothing netplug leaves behind outlives
// it. Each scenario pins one defect of the safety issue against the real stack.
func TestSafety(t *testing.T) {
	runScenarios(t, []scenarioSpec{
		{"S1-NameThePodHasIsRefused", false, testNameThePodHasIsRefused},
		{"S2-FinalizerGoesWithTheLastUnplug", false, testFinalizerGoesWithTheLastUnplug},
		{"S3-DotNamedInterfaceIsReleased", true, testDotNamedInterfaceIsReleased},
		{"S4-UnsupportedFieldIsRefused", false, testUnsupportedFieldIsRefused},
		{"S5-ForeignInterfaceIsKept", false, testForeignInterfaceIsKept},
		{"S6-DELFailingForeverHasADeadline", false, testDELFailingForeverHasADeadline},
		{"S7-PodsOfADeletedNodeAreFreed", false, testPodsOfADeletedNodeAreFreed},
		{"S8-DefaultNetworksAreKept", true, testDefaultNetworksAreKept},
	})
}

// hasFinalizer reads whether the pod carries netplug's finalizer now.
func (s *scenario) hasFinalizer(name string) bool {
	s.T.Helper()
	return slices.Contains(s.MustGetPod(name).Finalizers, releaseFinalizer)
}

// waitFinalizer waits until the pod carries netplug's finalizer (want) or not.
func (s *scenario) waitFinalizer(name string, want bool) {
	s.T.Helper()
	framework.WaitUntil(s.T, framework.PlugTimeout, fmt.Sprintf("pod %s finalizer present=%v", name, want), func(ctx context.Context) (bool, string) {
		p, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return slices.Contains(p.Finalizers, releaseFinalizer) == want, fmt.Sprintf("finalizers %v", p.Finalizers)
	})
}

// inPodNetns runs an ip(8) command inside the pod's network namespace, as another component on
// the node would.
func (s *scenario) inPodNetns(pod *corev1.Pod, args ...string) {
	s.T.Helper()
	ctx, cancel := s.Ctx()
	defer cancel()
	sb, err := s.Cri.PodSandbox(ctx, string(pod.UID))
	if err != nil {
		s.T.Fatalf("sandbox of %s: %v", pod.Name, err)
	}
	out, err := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + sb.NetNS, "ip"}, args...)...).CombinedOutput()
	if err != nil {
		s.T.Fatalf("ip %v in pod %s: %v: %s", args, pod.Name, err, out)
	}
}

// Item 1: a name the pod already has is refused before any call (its default interface), and a
// name Multus refuses because it exists is never DELeted afterwards.
func testNameThePodHasIsRefused(t *testing.T) {
	s := newScenario(t, "name")
	s.CreateBridgeNAD("br", "np13", "10.213.0.0/24")
	pod := s.RunningPod("p")
	before := s.ExpectLinkNames("p")

	s.SetNetworks("p", framework.Selection(framework.Element{Name: "br", Interface: "eth0"}))
	s.WaitEvent(pod, warning, "InterfaceNameInUse", "eth0")
	s.Touch("p") // another reconcile: still nothing
	time.Sleep(2 * time.Second)
	s.ExpectUnchanged("p", before, s.ExpectLinkNames("p"), "lo", "eth0")
	s.WaitIPAM("br")
	if s.hasFinalizer("p") {
		t.Fatal("finalizer on a pod nothing was plugged into")
	}

	// A link no network-status lists (another component made it): Multus refuses the ADD, and
	// the next reconcile must not DEL the name.
	s.inPodNetns(pod, "link", "add", "data0", "type", "veth", "peer", "name", "data0p")
	withData0 := s.Links("p")
	s.SetNetworks("p", "br@data0")
	s.WaitEvent(pod, warning, "InterfaceNameInUse", "data0")
	s.Touch("p")
	time.Sleep(2 * time.Second)
	after := s.Links("p")
	for _, name := range []string{"eth0", "data0", "data0p"} {
		if !after[name].Same(withData0[name]) {
			t.Errorf("link %s changed: %+v -> %+v", name, withData0[name], after[name])
		}
	}
	s.WaitIPAM("br")
	s.SetNetworks("p", "")
}

// Item 2: the finalizer is there only while netplug holds a hot-plugged interface.
func testFinalizerGoesWithTheLastUnplug(t *testing.T) {
	s := newScenario(t, "fin")
	s.CreateBridgeNAD("br", "np14", "10.214.0.0/24")
	s.RunningPod("p")
	s.SetNetworks("p", "br@hp1")
	s.WaitAttached("p", "br", "hp1")
	s.waitFinalizer("p", true)
	s.SetNetworks("p", "")
	s.WaitDetached("p", "hp1")
	s.waitFinalizer("p", false)
}

// Item 3: an interface named like the checkpoint store's own files is released with its pod.
func testDotNamedInterfaceIsReleased(t *testing.T) {
	s := newScenario(t, "dot")
	s.CreateBridgeNAD("br", "np15", "10.215.0.0/24")
	s.RunningPod("p")
	s.SetNetworks("p", framework.Selection(framework.Element{Name: "br", Interface: ".tmp-a"}))
	a := s.WaitAttached("p", "br", ".tmp-a")
	s.WaitIPAM("br", a.IP())
	s.restartNetplugOrFail() // start-up must not take the record for a temporary file
	s.deletePodAndWait("p")
	s.WaitIPAM("br")
}

// Item 4: a selection field hot-plug cannot carry out is refused by name.
func testUnsupportedFieldIsRefused(t *testing.T) {
	s := newScenario(t, "field")
	s.CreateBridgeNAD("br", "np16", "10.216.0.0/24")
	pod := s.RunningPod("p")
	before := s.ExpectLinkNames("p")
	s.SetNetworks("p", `[{"name":"br","interface":"hp1","default-route":["10.216.0.1"]}]`)
	s.WaitEvent(pod, warning, "UnsupportedSelectionField", `"default-route"`)
	s.ExpectUnchanged("p", before, s.ExpectLinkNames("p"), "lo", "eth0")
}

// Item 5: an interface another component attached and recorded in network-status (as Multus
// does for defaultNetworks) stays through every edit of the pod's own selection.
func testForeignInterfaceIsKept(t *testing.T) {
	s := newScenario(t, "own")
	s.CreateBridgeNAD("br", "np17", "10.217.0.0/24")
	s.CreateBridgeNAD("other", "np18", "10.218.0.0/24")
	pod := s.RunningPod("p")

	// The other component: a /delegate ADD of its own, and its entry in network-status.
	ctx, cancel := context.WithTimeout(context.Background(), framework.PlugTimeout)
	defer cancel()
	sb, err := s.Cri.PodSandbox(ctx, string(pod.UID))
	if err != nil {
		t.Fatal(err)
	}
	nad, err := s.Nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(s.Ns).Get(ctx, "other", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client := multus.New(s.Env.MultusSocket, 60*time.Second)
	req := multus.Request{SandboxID: sb.ID, NetNS: sb.NetNS, IfName: "ext0", PodNamespace: s.Ns, PodName: "p",
		PodUID: string(pod.UID), Config: []byte(nad.Spec.Config)}
	result, err := client.Add(ctx, req)
	if err != nil {
		t.Fatalf("the other component's ADD: %v", err)
	}
	t.Cleanup(func() { _ = client.Del(context.Background(), req) })
	ip, mac := "", ""
	if len(result.IPs) > 0 {
		ip = result.IPs[0].Address.IP.String()
	}
	for _, i := range result.Interfaces {
		if i.Name == "ext0" && i.Sandbox != "" {
			mac = i.Mac
		}
	}
	s.addStatusEntry("p", nadv1.NetworkStatus{Name: s.Ns + "/other", Interface: "ext0", IPs: []string{ip}, Mac: mac})

	for _, edit := range []string{"br", "br,br", "[]", ""} {
		s.SetNetworks("p", edit)
		s.Touch("p")
		time.Sleep(time.Second)
	}
	s.WaitDetached("p", "net1")
	s.WaitDetached("p", "net2")
	a := s.WaitAttached("p", "other", "ext0")
	if a.IP() != ip {
		t.Fatalf("ext0 has %s, want %s", a.IP(), ip)
	}
	s.WaitIPAM("other", ip)
}

// addStatusEntry adds entry to the pod's network-status, guarded by resourceVersion, as a
// careful second writer does.
func (s *scenario) addStatusEntry(name string, entry nadv1.NetworkStatus) {
	s.T.Helper()
	framework.WaitUntil(s.T, framework.ApiTimeout, "network-status entry written", func(ctx context.Context) (bool, string) {
		p, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		entries, err := framework.NetworkStatus(p)
		if err != nil {
			return false, err.Error()
		}
		raw, _ := json.Marshal(append(entries, entry))
		p.Annotations[nadv1.NetworkStatusAnnot] = string(raw)
		if _, err := s.Kube.CoreV1().Pods(s.Ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// deletePodAndWait deletes the pod and waits until the API no longer has it.
func (s *scenario) deletePodAndWait(name string) {
	s.T.Helper()
	ctx, cancel := s.Ctx()
	grace := int64(1)
	err := s.Kube.CoreV1().Pods(s.Ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	cancel()
	if err != nil {
		s.T.Fatalf("deleting pod %s: %v", name, err)
	}
	framework.WaitUntil(s.T, 90*time.Second, "pod "+name+" gone", func(ctx context.Context) (bool, string) {
		_, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

func (s *scenario) restartNetplugOrFail() {
	s.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.RestartNetplug(ctx); err != nil {
		s.T.Fatalf("restarting netplug: %v", err)
	}
}

// faildelPlugin is a CNI plugin for the suite: bridge, except that DEL fails while its marker
// file exists.
const faildelPlugin = `#!/bin/sh
if [ "$CNI_COMMAND" = DEL ] && [ -e "$(dirname "$0")/e2e-faildel.marker" ]; then
  echo '{"cniVersion":"0.4.0","code":999,"msg":"e2e: DEL fails while the marker exists"}'
  exit 1
fi
exec "$(dirname "$0")/bridge"
`

// Item 6: a DEL that fails forever holds the pod only until finalizerTimeout after its
// deletion deadline (45 s in the local overlay); then the finalizer goes with a Warning.
func testDELFailingForeverHasADeadline(t *testing.T) {
	s := newScenario(t, "delfail")
	binDir := filepath.Join(s.Env.ClusterDir, "cni", "bin")
	plugin := filepath.Join(binDir, "e2e-faildel")
	if err := os.WriteFile(plugin, []byte(faildelPlugin), 0o755); err != nil { //nolint:gosec // a CNI plugin must be executable
		t.Fatal(err)
	}
	marker := filepath.Join(binDir, "e2e-faildel.marker")
	t.Cleanup(func() { _ = os.Remove(marker) })
	cfg := s.BridgeConfig("np19", "10.219.0.0/24")
	cfg["type"] = "e2e-faildel"
	s.CreateNAD("fd", cfg)
	pod := s.RunningPod("p")
	s.SetNetworks("p", "fd@hp1")
	s.WaitAttached("p", "fd", "hp1")
	s.waitFinalizer("p", true)
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := s.Ctx()
	grace := int64(1)
	err := s.Kube.CoreV1().Pods(s.Ns).Delete(ctx, "p", metav1.DeleteOptions{GracePeriodSeconds: &grace})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	framework.WaitUntil(t, 2*time.Minute, "the finalizer to go after the deadline", func(ctx context.Context) (bool, string) {
		p, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, "p", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		return !slices.Contains(p.Finalizers, releaseFinalizer), fmt.Sprintf("finalizers %v", p.Finalizers)
	})
	if waited := time.Since(start); waited < 40*time.Second {
		t.Errorf("the finalizer went after %s, before the 45 s deadline", waited)
	}
	s.WaitEvent(pod, warning, "ReleaseDeadlineExceeded", releaseFinalizer)
	_ = os.Remove(marker) // the kubelet's own teardown can finish now
	framework.WaitUntil(t, 90*time.Second, "pod gone", func(ctx context.Context) (bool, string) {
		_, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, "p", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

// Item 6: pods of a Node that no longer exists are freed by the elected sweep.
func testPodsOfADeletedNodeAreFreed(t *testing.T) {
	s := newScenario(t, "node")
	nodeName := "ghost-" + rand.String(5)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := s.Kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Kube.CoreV1().Nodes().Delete(context.Background(), nodeName, metav1.DeleteOptions{}) })
	pod := s.NewPod("p")
	pod.Spec.NodeName = nodeName
	pod.Finalizers = []string{releaseFinalizer} // as netplug on that node had put it
	s.CreatePod(pod)
	time.Sleep(2 * time.Second)
	if !s.hasFinalizer("p") {
		t.Fatal("the finalizer of a pod of a live node was removed")
	}
	if err := s.Kube.CoreV1().Nodes().Delete(ctx, nodeName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.waitFinalizer("p", false)
	s.WaitEvent(s.MustGetPod("p"), warning, "NodeGone", nodeName)
}

// multusWithDefaultNetworks restarts the Multus daemon with defaultNetworks set to networks
// (NADs of kube-system) and returns a function that restores its config and restarts it again.
func (s *scenario) multusWithDefaultNetworks(networks ...string) (restore func()) {
	s.T.Helper()
	d, err := s.FindMultusDaemon()
	if err != nil {
		s.T.Fatal(err)
	}
	i := slices.Index(d.Argv, "-config")
	if i < 0 || i+1 >= len(d.Argv) {
		s.T.Fatalf("the Multus daemon runs without -config: %v", d.Argv)
	}
	path := d.Argv[i+1]
	original, err := os.ReadFile(path)
	if err != nil {
		s.T.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(original, &cfg); err != nil {
		s.T.Fatal(err)
	}
	cfg["defaultNetworks"] = networks
	changed, _ := json.Marshal(cfg)
	restart := func(content []byte) {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			s.T.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := d.Restart(ctx, 0, s.MultusHealthy); err != nil {
			s.T.Fatal(err)
		}
	}
	restart(changed)
	restored := false
	restore = func() {
		if !restored {
			restored = true
			restart(original)
		}
	}
	s.T.Cleanup(restore)
	return restore
}

// Item 5: with Multus defaultNetworks configured, a pod keeps that interface through every edit
// of its own selection (Multus writes it to network-status as a non-default entry).
func testDefaultNetworksAreKept(t *testing.T) {
	s := newScenario(t, "dflt")
	dn := "e2e-dn-" + rand.String(4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := s.BridgeConfig("np20", "10.220.0.0/24")
	cfg["cniVersion"], cfg["name"] = "0.4.0", dn
	raw, _ := json.Marshal(cfg)
	if _, err := s.Nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions("kube-system").Create(ctx, &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: dn}, Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: string(raw)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions("kube-system").Delete(context.Background(), dn, metav1.DeleteOptions{})
	})
	s.CreateBridgeNAD("br", "np21", "10.221.0.0/24")
	restore := s.multusWithDefaultNetworks(dn)
	s.RunningPod("p")
	restore() // the pod has its default network now; the other scenarios must not get one
	hasDefault := func(ctx context.Context) (bool, string) {
		p, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		statuses, err := framework.SecondaryStatus(p)
		if err != nil {
			return false, err.Error()
		}
		st, ok := statuses["net1"]
		if !ok || st.Name != "kube-system/"+dn {
			return false, "network-status: " + p.Annotations[nadv1.NetworkStatusAnnot]
		}
		links, err := s.PodLinks(ctx, p)
		if err != nil {
			return false, err.Error()
		}
		if why := links["net1"].DisagreesWith(st); why != "" {
			return false, why
		}
		return true, ""
	}
	framework.WaitUntil(t, framework.PlugTimeout, "the defaultNetworks interface", hasDefault)
	for _, edit := range []string{"br", "br@hp1", "[]", "br", ""} {
		s.SetNetworks("p", edit)
		time.Sleep(time.Second)
		framework.WaitUntil(t, framework.PlugTimeout, "the defaultNetworks interface after "+edit, hasDefault)
	}
	s.WaitDetached("p", "net2")
	s.WaitDetached("p", "hp1")
}
