//go:build e2e

package suite

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/netplug/netplug/e2e/framework"
)

const (
	normal  = corev1.EventTypeNormal
	warning = corev1.EventTypeWarning
)

// TestNetplug runs every scenario. Those that disrupt the controller or the Multus daemon run
// one after the other, inline; the others call t.Parallel, which holds them until this function
// has returned, so they run together afterwards and never overlap a disruption.
func TestNetplug(t *testing.T) {
	runScenarios(t, []scenarioSpec{
		{"01-PlugUnplugBridge", false, testPlugUnplugBridge},
		{"02-TwoNetworksOneEdit", false, testTwoNetworksOneEdit},
		{"03-MacvlanStaticIPAndMAC", false, testMacvlanStaticIPAndMAC},
		{"04-UnnamedInterfaceKeptAcrossRestart", true, testUnnamedInterfaceKeptAcrossRestart},
		{"05-ChangedIPReplugs", false, testChangedIPReplugs},
		{"06-EditWhilePending", false, testEditWhilePending},
		{"07-NADCreatedAfterPod", false, testNADCreatedAfterPod},
		{"08-BadElementsIsolated", false, testBadElementsIsolated},
		{"09-ControllerKilledDuringBurst", true, testControllerKilledDuringBurst},
		{"10-MultusDownDuringEdits", true, testMultusDownDuringEdits},
		{"11-DeletedPodReleasesIPAM", false, testDeletedPodReleasesIPAM},
		{"12-OtherNodePodIgnored", false, testOtherNodePodIgnored},
		{"13-CreatedAndEditedWhileAway", true, testCreatedAndEditedWhileAway},
	})
}

// 1. A bridge network plugged into a running pod, then unplugged.
func testPlugUnplugBridge(t *testing.T) {
	s := newScenario(t, "plug")
	const subnet = "10.201.0.0/24"
	s.CreateBridgeNAD("br", "np01", subnet)
	s.RunningPod("p")
	before := s.ExpectLinkNames("p")

	pod := s.SetNetworks("p", "br@hp1") // the comma form, with an interface name
	a := s.WaitAttached("p", "br", "hp1")
	if a.Link.Type != "veth" || !framework.InSubnet(a.IP(), subnet) {
		t.Errorf("hp1 is a %s with %v, want a veth in %s", a.Link.Type, a.Link.Addrs, subnet)
	}
	s.WaitEvent(pod, normal, "NetworkPlugged", s.Ns+"/br as hp1")
	s.ExpectUnchanged("p", before, s.ExpectLinkNames("p", "hp1"), "lo", "eth0")
	s.WaitIPAM("br", a.IP())

	s.SetNetworks("p", "")
	s.WaitDetached("p", "hp1")
	s.WaitEvent(pod, normal, "NetworkUnplugged", s.Ns+"/br from hp1")
	s.ExpectUnchanged("p", before, s.ExpectLinkNames("p"), "lo", "eth0")
	s.WaitIPAM("br")
}

// 2. Two networks added in one edit; then one removed while the other stays as it was.
func testTwoNetworksOneEdit(t *testing.T) {
	s := newScenario(t, "two")
	s.CreateBridgeNAD("a", "np02a", "10.202.0.0/24")
	s.CreateBridgeNAD("b", "np02b", "10.202.1.0/24")
	s.RunningPod("p")

	pod := s.SetNetworks("p", framework.Selection(framework.Element{Name: "a", Interface: "neta"}, framework.Element{Name: "b", Interface: "netb"}))
	a := s.WaitAttached("p", "a", "neta")
	b := s.WaitAttached("p", "b", "netb")
	both := s.ExpectLinkNames("p", "neta", "netb")
	s.WaitIPAM("a", a.IP())
	s.WaitIPAM("b", b.IP())

	s.SetNetworks("p", framework.Selection(framework.Element{Name: "a", Interface: "neta"}))
	s.WaitDetached("p", "netb")
	s.WaitEvent(pod, normal, "NetworkUnplugged", s.Ns+"/b from netb")
	s.ExpectUnchanged("p", both, s.ExpectLinkNames("p", "neta"), "eth0", "neta")
	kept := s.WaitAttached("p", "a", "neta")
	if !slices.Equal(kept.Status.IPs, a.Status.IPs) || kept.Status.Mac != a.Status.Mac {
		t.Errorf("network-status of neta changed from %+v to %+v", a.Status, kept.Status)
	}
	s.WaitIPAM("b")
	s.WaitIPAM("a", a.IP())
	if n := s.CountEvents(pod, "NetworkReplugged"); n != 0 {
		t.Errorf("%d NetworkReplugged events, want none", n)
	}
}

// 3. macvlan on the host veth with a requested static IP and MAC.
func testMacvlanStaticIPAndMAC(t *testing.T) {
	s := newScenario(t, "macvlan")
	const ip, mac = "10.203.0.10/24", "02:42:0a:cb:00:0a"
	s.CreateNAD("mv", map[string]any{
		"type": "macvlan", "master": s.Env.MacvlanMaster, "mode": "bridge",
		// Multus hands the element's ips and mac to the plugin as runtimeConfig (and CNI_ARGS).
		"capabilities": map[string]any{"ips": true, "mac": true},
		"ipam":         map[string]any{"type": "static"},
	})
	s.RunningPod("p")

	pod := s.SetNetworks("p", framework.Selection(framework.Element{Name: "mv", Interface: "mv1", IPs: []string{ip}, MAC: mac}))
	a := s.WaitAttached("p", "mv", "mv1")
	if a.Link.Type != "macvlan" {
		t.Errorf("mv1 is a %s, want macvlan", a.Link.Type)
	}
	if a.Link.MAC != mac || !slices.Equal(a.Link.Addrs, []string{ip}) {
		t.Errorf("mv1 has MAC %s and addresses %v, want %s and [%s]", a.Link.MAC, a.Link.Addrs, mac, ip)
	}
	if !strings.EqualFold(a.Status.Mac, mac) || a.IP() != framework.IpOf(ip) {
		t.Errorf("network-status of mv1 is %+v, want MAC %s and IP %s", a.Status, mac, ip)
	}
	s.WaitEvent(pod, normal, "NetworkPlugged", s.Ns+"/mv as mv1")

	s.SetNetworks("p", "")
	s.WaitDetached("p", "mv1")
	s.ExpectLinkNames("p")
}

// 4. Elements without an interface name get the lowest free netN, and keep it across a restart
// of the controller: no replug, no extra link, same addresses.
func testUnnamedInterfaceKeptAcrossRestart(t *testing.T) {
	s := newScenario(t, "restart")
	s.CreateBridgeNAD("ra", "np04a", "10.204.0.0/24")
	s.CreateBridgeNAD("rb", "np04b", "10.204.1.0/24")
	s.RunningPod("p")

	pod := s.SetNetworks("p", "ra,rb")
	net1 := s.WaitAttached("p", "ra", "net1")
	net2 := s.WaitAttached("p", "rb", "net2")
	before := s.ExpectLinkNames("p", "net1", "net2")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	restartStart := time.Now()
	if err := fw.RestartNetplug(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("netplug pod replaced, new one Ready after %s", time.Since(restartStart).Round(time.Millisecond))

	// An update the new controller must see, then an edit it must act on: once net3 is there,
	// the new controller has planned this pod as a whole at least once.
	s.Touch("p")
	s.SetNetworks("p", "ra,rb,ra")
	net3 := s.WaitAttached("p", "ra", "net3")
	after := s.ExpectLinkNames("p", "net1", "net2", "net3")
	s.ExpectUnchanged("p", before, after, "eth0", "net1", "net2")
	for _, was := range []framework.Attached{net1, net2} {
		now := s.WaitAttached("p", map[string]string{"net1": "ra", "net2": "rb"}[was.Link.Name], was.Link.Name)
		if !slices.Equal(now.Status.IPs, was.Status.IPs) || now.Status.Mac != was.Status.Mac {
			t.Errorf("network-status of %s changed across the restart: %+v -> %+v", was.Link.Name, was.Status, now.Status)
		}
	}
	if n := s.CountEvents(pod, "NetworkReplugged"); n != 0 {
		t.Errorf("%d NetworkReplugged events, want none", n)
	}
	s.WaitIPAM("ra", net1.IP(), net3.IP())
	s.WaitIPAM("rb", net2.IP())
}

// 5. Changing the requested IP of an attached interface replugs it with the new address.
func testChangedIPReplugs(t *testing.T) {
	s := newScenario(t, "replug")
	const first, second = "10.205.0.10/24", "10.205.0.20/24"
	s.CreateNAD("st", map[string]any{
		"type": "bridge", "bridge": "np05",
		"capabilities": map[string]any{"ips": true},
		"ipam":         map[string]any{"type": "static"},
	})
	s.RunningPod("p")

	pod := s.SetNetworks("p", framework.Selection(framework.Element{Name: "st", Interface: "st1", IPs: []string{first}}))
	a := s.WaitAttached("p", "st", "st1")
	if !slices.Equal(a.Link.Addrs, []string{first}) {
		t.Fatalf("st1 has %v, want [%s]", a.Link.Addrs, first)
	}

	s.SetNetworks("p", framework.Selection(framework.Element{Name: "st", Interface: "st1", IPs: []string{second}}))
	b := s.WaitAttachedWhere("p", "st", "st1", func(a framework.Attached) string {
		if !slices.Equal(a.Link.Addrs, []string{second}) {
			return fmt.Sprintf("st1 has %v, want [%s]", a.Link.Addrs, second)
		}
		return ""
	})
	if b.IP() != framework.IpOf(second) {
		t.Errorf("network-status of st1 has %v, want %s", b.Status.IPs, second)
	}
	s.WaitEvent(pod, normal, "NetworkReplugged", s.Ns+"/st as st1")
	s.ExpectLinkNames("p", "st1")
}

// 6. The annotation is edited while the pod is still Pending (its init container runs): the
// interface is plugged once the pod runs.
func testEditWhilePending(t *testing.T) {
	s := newScenario(t, "pending")
	s.CreateBridgeNAD("pn", "np06", "10.206.0.0/24")
	pod := s.NewPod("p")
	pod.Spec.InitContainers = []corev1.Container{{
		Name: "wait", Image: s.Env.BusyboxImage, ImagePullPolicy: corev1.PullNever,
		Command: []string{"sleep", "5"},
	}}
	s.CreatePod(pod)
	// The sandbox (and Multus's setup of it) is done once the init container runs.
	framework.WaitUntil(t, 60*time.Second, "the init container to run", func(ctx context.Context) (bool, string) {
		p, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, c := range p.Status.InitContainerStatuses {
			if c.State.Running != nil {
				return true, ""
			}
		}
		return false, "init container not running yet"
	})

	patched := s.SetNetworks("p", "pn@pn1")
	if patched.Status.Phase != corev1.PodPending {
		t.Fatalf("pod is %s at the edit; the scenario needs it Pending", patched.Status.Phase)
	}
	running := s.WaitRunning("p")
	a := s.WaitAttached("p", "pn", "pn1")
	ev := s.WaitEvent(running, normal, "NetworkPlugged", s.Ns+"/pn as pn1")
	t.Logf("edited while Pending; Running, then plugged %s (event at %s)", a.IP(), ev.LastTimestamp.Format(time.RFC3339))
	s.ExpectLinkNames("p", "pn1")
}

// 7. The NAD is created after the pod asks for it: a warning first, plugged once it exists.
func testNADCreatedAfterPod(t *testing.T) {
	s := newScenario(t, "latenad")
	s.RunningPod("p")

	pod := s.SetNetworks("p", "late@lt1")
	s.WaitEvent(pod, warning, "NetworkNotFound", s.Ns+"/late")
	s.ExpectLinkNames("p")

	s.CreateBridgeNAD("late", "np07", "10.207.0.0/24")
	a := s.WaitAttached("p", "late", "lt1")
	s.WaitEvent(pod, normal, "NetworkPlugged", s.Ns+"/late as lt1")
	s.ExpectLinkNames("p", "lt1")
	s.WaitIPAM("late", a.IP())
}

// 8. A malformed annotation, an unknown NAD, a duplicate and an invalid interface name each give
// a Warning event and leave the pod's working interface alone; a good edit then goes through.
func testBadElementsIsolated(t *testing.T) {
	s := newScenario(t, "bad")
	s.CreateBridgeNAD("ok", "np08a", "10.208.0.0/24")
	s.CreateBridgeNAD("ok2", "np08b", "10.208.1.0/24")
	s.RunningPod("p")
	good := framework.Element{Name: "ok", Interface: "ok1"}
	s.SetNetworks("p", framework.Selection(good))
	ok1 := s.WaitAttached("p", "ok", "ok1")
	before := s.ExpectLinkNames("p", "ok1")
	statusBefore := s.MustGetPod("p").Annotations[nadv1.NetworkStatusAnnot]

	for _, step := range []struct {
		name, selection, reason, message string
	}{
		{"malformed", `[{"name":"ok","interface":"ok1"}`, "InvalidNetworkSelection", "malformed network selection annotation"},
		{"unknown NAD", framework.Selection(good, framework.Element{Name: "nope", Interface: "nope1"}), "NetworkNotFound", s.Ns + "/nope"},
		{"duplicate interface", framework.Selection(good, framework.Element{Name: "ok2", Interface: "ok1"}), "DuplicateInterface", `"ok1"`},
		{"invalid interface name", framework.Selection(good, framework.Element{Name: "ok2", Interface: "bad/name"}), "InvalidInterfaceName", "bad/name"},
		{"name too long", framework.Selection(good, framework.Element{Name: "ok2", Interface: "sixteen-chars-xx"}), "InvalidInterfaceName", "sixteen-chars-xx"},
	} {
		pod := s.SetNetworks("p", step.selection)
		s.WaitEvent(pod, warning, step.reason, step.message)
		time.Sleep(time.Second) // let a wrong reaction, if any, reach the pod
		after := s.ExpectLinkNames("p", "ok1")
		s.ExpectUnchanged("p", before, after, "eth0", "ok1")
		if got := s.MustGetPod("p").Annotations[nadv1.NetworkStatusAnnot]; got != statusBefore {
			t.Errorf("after the %s edit network-status changed:\n%s\nwas:\n%s", step.name, got, statusBefore)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	s.WaitIPAM("ok", ok1.IP())
	s.WaitIPAM("ok2")

	// A good edit goes through, and ok1 is still the same link.
	s.SetNetworks("p", framework.Selection(good, framework.Element{Name: "ok2", Interface: "ok2"}))
	s.WaitAttached("p", "ok2", "ok2")
	s.ExpectUnchanged("p", before, s.ExpectLinkNames("p", "ok1", "ok2"), "eth0", "ok1")
}

// 9. The controller is SIGKILLed in the middle of plugging 20 pods: after kubelet restarts it
// every pod converges, with no duplicate or leftover interface or address.
func testControllerKilledDuringBurst(t *testing.T) {
	const pods = 20
	s := newScenario(t, "burst")
	s.CreateBridgeNAD("ba", "np09a", "10.209.0.0/24")
	s.CreateBridgeNAD("bb", "np09b", "10.209.1.0/24")
	names := make([]string, pods)
	for i := range names {
		names[i] = fmt.Sprintf("p%02d", i)
	}
	if err := concurrently(names, func(ctx context.Context, name string) error {
		_, err := s.Kube.CoreV1().Pods(s.Ns).Create(ctx, s.NewPod(name), metav1.CreateOptions{})
		return err
	}); err != nil {
		t.Fatalf("creating pods: %v", err)
	}
	created := time.Now()
	for _, n := range names {
		s.WaitRunning(n)
	}
	t.Logf("%d pods running after %s", pods, time.Since(created).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	np, err := fw.NetplugPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	restartsBefore := framework.Restarts(np)

	value := "ba,bb"
	burst := time.Now()
	if err := concurrently(names, func(ctx context.Context, name string) error {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, nadv1.NetworkAttachmentAnnot, value)
		_, err := s.Kube.CoreV1().Pods(s.Ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	}); err != nil {
		t.Fatalf("annotating pods: %v", err)
	}
	// Kill as soon as the first interface is reported: the burst is under way.
	var pluggedAtKill int
	framework.WaitUntil(t, 30*time.Second, "the first interface of the burst", func(ctx context.Context) (bool, string) {
		n, err := s.countSecondaryStatus(ctx)
		pluggedAtKill = n
		if err != nil {
			return false, err.Error()
		}
		return n > 0, "none yet"
	})
	pid, err := fw.KillNetplugController(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	t.Logf("SIGKILLed netplug-controller (pid %d) %s into the burst, with %d of %d interfaces in network-status",
		pid, time.Since(burst).Round(time.Millisecond), pluggedAtKill, 2*pods)
	if framework.ProcessAlive(pid) {
		time.Sleep(100 * time.Millisecond)
		if framework.ProcessAlive(pid) {
			t.Fatalf("netplug-controller (pid %d) still alive after SIGKILL", pid)
		}
	}
	if _, err := fw.WaitNetplugReady(ctx, "", restartsBefore); err != nil {
		t.Fatalf("waiting for kubelet to restart netplug: %v", err)
	}
	t.Logf("netplug restarted and Ready %s after the kill", time.Since(killed).Round(time.Millisecond))

	var ipsA, ipsB []string
	for _, n := range names {
		a := s.WaitAttached(n, "ba", "net1")
		b := s.WaitAttached(n, "bb", "net2")
		s.ExpectLinkNames(n, "net1", "net2")
		ipsA, ipsB = append(ipsA, a.IP()), append(ipsB, b.IP())
	}
	t.Logf("all %d pods converged %s after the burst began", pods, time.Since(burst).Round(time.Millisecond))
	for _, ips := range [][]string{ipsA, ipsB} {
		sorted := slices.Clone(ips)
		sort.Strings(sorted)
		if len(slices.Compact(sorted)) != pods {
			t.Errorf("duplicate addresses among the pods: %v", ips)
		}
	}
	s.WaitIPAM("ba", ipsA...)
	s.WaitIPAM("bb", ipsB...)
}

// countSecondaryStatus counts the secondary network-status entries over the scenario's pods.
func (s *scenario) countSecondaryStatus(ctx context.Context) (int, error) {
	list, err := s.Kube.CoreV1().Pods(s.Ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range list.Items {
		st, err := framework.SecondaryStatus(&list.Items[i])
		if err != nil {
			return 0, err
		}
		n += len(st)
	}
	return n, nil
}

// concurrently runs fn for every name at once and returns the first error.
func concurrently(names []string, fn func(ctx context.Context, name string) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx, n); err != nil {
				errs[i] = fmt.Errorf("%s: %w", n, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// 10. The Multus daemon is down for 20 s while pods are edited (one unplug, two plugs): the
// failures are reported, nothing changes meanwhile, and all converge once it is back.
func testMultusDownDuringEdits(t *testing.T) {
	const downtime = 20 * time.Second
	s := newScenario(t, "multus")
	s.CreateBridgeNAD("md", "np10", "10.210.0.0/24")
	for _, n := range []string{"a", "b", "c"} {
		s.CreatePod(s.NewPod(n))
	}
	for _, n := range []string{"a", "b", "c"} {
		s.WaitRunning(n)
	}
	s.SetNetworks("a", "md@md1")
	s.WaitAttached("a", "md", "md1")

	// Runs after the daemon is back (cleanups run last-in first-out): a netplug that cannot
	// reach it would fail every later scenario, so it is restarted, after the diagnostics.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if ok, why := fw.NetplugSeesMultusSocket(ctx); !ok {
			s.DumpIfFailed()
			t.Logf("repair: %s; restarting netplug for the scenarios that follow", why)
			if err := fw.RestartNetplug(ctx); err != nil {
				t.Errorf("repair: %v", err)
			}
		}
	})
	restart := fw.StopMultus(t)
	stopped := time.Now()
	podA := s.SetNetworks("a", "")
	podB := s.SetNetworks("b", "md@md1")
	s.SetNetworks("c", "md@md1")
	s.WaitEvent(podB, warning, "PlugFailed", s.Ns+"/md as md1")
	s.WaitEvent(podA, warning, "UnplugFailed", s.Ns+"/md from md1")
	// Nothing can have changed while the daemon is down.
	s.ExpectLinkNames("a", "md1")
	s.ExpectLinkNames("b")
	s.ExpectLinkNames("c")

	time.Sleep(time.Until(stopped.Add(downtime)))
	restart()
	back := time.Now()
	// The daemon deletes and recreates its socket directory when it starts, which leaves the
	// netplug container's bind mount of that directory pointing at the deleted one. netplug's
	// liveness check notices and the kubelet restarts the container (probe period x threshold
	// plus the kubelet's restart backoff); without that it would never reach the daemon again.
	framework.WaitUntil(t, 45*time.Second, "the Multus socket to be visible to netplug", func(ctx context.Context) (bool, string) {
		return fw.NetplugSeesMultusSocket(ctx)
	})
	s.WaitDetached("a", "md1")
	b := s.WaitAttached("b", "md", "md1")
	c := s.WaitAttached("c", "md", "md1")
	t.Logf("converged %s after the Multus daemon came back", time.Since(back).Round(time.Millisecond))
	s.ExpectLinkNames("a")
	s.ExpectLinkNames("b", "md1")
	s.ExpectLinkNames("c", "md1")
	s.WaitIPAM("md", b.IP(), c.IP())
}

// 11. Deleting a pod with hot-plugged host-local interfaces releases their addresses.
func testDeletedPodReleasesIPAM(t *testing.T) {
	s := newScenario(t, "release")
	s.CreateBridgeNAD("rel", "np11", "10.211.0.0/24")
	s.RunningPod("p")
	s.SetNetworks("p", "rel,rel")
	a := s.WaitAttached("p", "rel", "net1")
	b := s.WaitAttached("p", "rel", "net2")
	s.WaitIPAM("rel", a.IP(), b.IP())

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	grace := int64(1)
	if err := s.Kube.CoreV1().Pods(s.Ns).Delete(ctx, "p", metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatalf("deleting the pod: %v", err)
	}
	framework.WaitUntil(t, 60*time.Second, "the pod to be gone", func(ctx context.Context) (bool, string) {
		_, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, "p", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		return false, fmt.Sprintf("still there (%v)", err)
	})
	deleted := time.Now()
	s.WaitIPAM("rel")
	t.Logf("addresses released %s after the pod was gone", time.Since(deleted).Round(time.Millisecond))
}

// 12. A pod bound to another node is never touched, while a pod on this node, edited at the same
// time, is served.
func testOtherNodePodIgnored(t *testing.T) {
	const otherNode = "other-node"
	s := newScenario(t, "othernode")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := s.Kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: otherNode, Labels: map[string]string{"kubernetes.io/hostname": otherNode, "netplug-e2e": "true"},
	}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating node %s: %v", otherNode, err)
	}
	t.Cleanup(func() { s.deleteFakeNode(otherNode) })
	s.CreateBridgeNAD("on", "np12", "10.212.0.0/24")
	s.RunningPod("here")

	far := s.NewPod("far")
	far.Spec.NodeName = otherNode
	far.Annotations = map[string]string{nadv1.NetworkAttachmentAnnot: "on@on1"}
	far = s.CreatePod(far)
	s.SetNetworks("here", "on@on1")
	s.SetNetworks("far", "on@on1,on@on2") // an update event too
	s.WaitAttached("here", "on", "on1")
	// A later edit of "here", served after the edit of "far": netplug has had its chance.
	s.SetNetworks("here", "on@on1,on@on2")
	s.WaitAttached("here", "on", "on2")
	time.Sleep(2 * time.Second)

	got := s.MustGetPod("far")
	if st, ok := got.Annotations[nadv1.NetworkStatusAnnot]; ok {
		t.Errorf("the pod on %s has a network-status: %s", otherNode, st)
	}
	events, err := s.NetplugEvents(ctx, far)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		t.Errorf("netplug recorded an event on the pod of %s: %s %s: %s", otherNode, e.Type, e.Reason, e.Message)
	}
}

// deleteFakeNode deletes a node without a kubelet, then the pods bound to it (the scenario's
// own, and the one the netplug DaemonSet schedules there), which no kubelet will ever confirm.
func (s *scenario) deleteFakeNode(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Kube.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		s.T.Logf("cleanup: deleting node %s: %v", name, err)
	}
	pods, err := s.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + name})
	if err != nil {
		s.T.Logf("cleanup: listing pods of node %s: %v", name, err)
		return
	}
	zero := int64(0)
	for _, p := range pods.Items {
		if err := s.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
			s.T.Logf("cleanup: deleting pod %s/%s: %v", p.Namespace, p.Name, err)
		}
	}
}

// 13. A pod created and edited while netplug was off the node: netplug never saw what the pod
// asked Multus for at creation, but the pod's sandbox kept the annotations kubelet created it
// with. So what Multus attached for them is the pod's: the unnamed interface the edit dropped is
// unplugged, and the name it gives another network is replugged (before the fix both stayed: net1
// kept, "held" refused as a name in use). Found by the soak.
func testCreatedAndEditedWhileAway(t *testing.T) {
	s := newScenario(t, "away")
	s.CreateBridgeNAD("wa", "np13a", "10.224.0.0/24")
	s.CreateBridgeNAD("wb", "np13b", "10.224.1.0/24")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() { // the scenarios that follow need netplug on the node
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if paused, err := fw.NetplugPaused(ctx); err == nil && paused {
			if err := fw.ResumeNetplug(ctx); err != nil {
				t.Errorf("bringing netplug back: %v", err)
			}
		}
	})
	if err := fw.PauseNetplug(ctx); err != nil {
		t.Fatal(err)
	}
	pod := s.NewPod("p")
	pod.Annotations = map[string]string{nadv1.NetworkAttachmentAnnot: "wa,wb@held"}
	s.CreatePod(pod)
	s.WaitRunning("p")
	s.WaitAttached("p", "wa", "net1") // Multus's, at creation
	s.WaitAttached("p", "wb", "held")
	s.SetNetworks("p", "wa@held")
	if err := fw.ResumeNetplug(ctx); err != nil {
		t.Fatal(err)
	}
	s.WaitDetached("p", "net1")
	held := s.WaitAttached("p", "wa", "held")
	running := s.WaitRunning("p")
	s.WaitEvent(running, normal, "NetworkUnplugged", s.Ns+"/wa from net1")
	s.WaitEvent(running, normal, "NetworkReplugged", s.Ns+"/wa as held")
	s.ExpectLinkNames("p", "held")
	s.WaitIPAM("wa", held.IP())
	s.WaitIPAM("wb")
}
