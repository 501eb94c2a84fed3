//go:build e2e

package suite

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netplug/netplug/e2e/framework"
)

// Issue 14: device-backed networks hot-plugged into running pods. Each scenario asserts the
// pod's netns, the host's links and the pool's accounting (the plugin's own ListAndWatch).

// createPoolNAD creates a host-device NAD tied to the veth pool by resourceName, naming no
// device (netplug picks one), with host-local IPAM in subnet.
func (s *scenario) createPoolNAD(name, subnet string) {
	s.T.Helper()
	s.CreateNAD(name, map[string]any{"type": "host-device", "ipam": map[string]any{
		"type": "host-local", "dataDir": s.Env.IPAMDir, "ranges": []any{[]any{map[string]any{"subnet": subnet}}}}})
	ctx, cancel := s.Ctx()
	defer cancel()
	nad, err := s.Nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(s.Ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		s.T.Fatal(err)
	}
	nad.Annotations = map[string]string{"k8s.v1.cni.cncf.io/resourceName": string(vethPool)}
	if _, err := s.Nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(s.Ns).Update(ctx, nad, metav1.UpdateOptions{}); err != nil {
		s.T.Fatal(err)
	}
}

// onlyDevice makes name (with addr on the host) the pool's only healthy device, and waits until
// the plugin and the node's allocatable say so.
func (s *scenario) onlyDevice(name, addr string) {
	s.T.Helper()
	s.hostVeth(name, addr)
	s.waitDevice(vethPool, name, pluginapi.Healthy)
	framework.WaitUntil(s.T, 60*time.Second, name+" the only healthy device of the pool", func(ctx context.Context) (bool, string) {
		devs, err := pluginDevices(ctx, vethPool)
		if err != nil {
			return false, err.Error()
		}
		for id, h := range devs {
			if h == pluginapi.Healthy && id != name {
				return false, fmt.Sprint(devs)
			}
		}
		return true, ""
	})
}

// waitOnHost waits until the link is back on the host under its name, with addr if given.
func (s *scenario) waitOnHost(name, addr string) {
	s.T.Helper()
	framework.WaitUntil(s.T, 90*time.Second, name+" back on the host", func(context.Context) (bool, string) {
		addrs, ok := hostAddrs(name)
		return ok && (addr == "" || slices.Contains(addrs, addr)), fmt.Sprintf("on host %v, addresses %v", ok, addrs)
	})
}

func (s *scenario) expectNotOnHost(name string) {
	s.T.Helper()
	if _, ok := hostAddrs(name); ok {
		s.T.Fatalf("%s is still on the host", name)
	}
}

func TestDeviceHotplug(t *testing.T) {
	if os.Getenv("NETPLUG_E2E_DEVICES") == "0" {
		t.Skip("NETPLUG_E2E_DEVICES=0")
	}
	// A device-backed element next to a bridge one, in one edit; then the device alone goes,
	// back to the host under its name with its address, and to the pool.
	t.Run("PlugAndUnplugMixed", func(t *testing.T) {
		s := newScenario(t, "hot-mixed")
		s.onlyDevice("npdev20", "10.213.0.2/24")
		s.createPoolNAD("hd", "10.214.0.0/24")
		s.CreateBridgeNAD("br", "np14br", "10.214.1.0/24")
		pod := s.RunningPod("p")
		s.SetNetworks("p", "hd@net1,br@net2")
		hd := s.WaitAttached("p", "hd", "net1")
		s.WaitAttached("p", "br", "net2")
		if !framework.InSubnet(hd.Status.IPs[0], "10.214.0.0/24") {
			t.Fatalf("net1 has %v, want an address of the NAD's IPAM", hd.Status.IPs)
		}
		s.expectNotOnHost("npdev20")
		s.waitDevice(vethPool, "npdev20", pluginapi.Unhealthy) // out of the kubelet's reach
		s.WaitEvent(pod, corev1.EventTypeNormal, "NetworkPlugged", "with device npdev20 of pool "+string(vethPool))
		s.SetNetworks("p", "br@net2")
		s.WaitDetached("p", "net1")
		s.WaitAttached("p", "br", "net2")
		s.waitOnHost("npdev20", "10.213.0.2/24")
		s.waitDevice(vethPool, "npdev20", pluginapi.Healthy)
		s.WaitEvent(pod, corev1.EventTypeNormal, "DeviceReturned", "npdev20")
	})

	// The pool's last free device is hot-plugged: a pod asking for the resource by limit stays
	// Pending (the scheduler's reason) until it is unplugged, and then gets it at start.
	t.Run("LastDeviceThenPending", func(t *testing.T) {
		s := newScenario(t, "hot-last")
		s.onlyDevice("npdev21", "")
		s.createPoolNAD("hd", "10.215.0.0/24")
		s.RunningPod("a")
		s.SetNetworks("a", "hd@net1")
		s.WaitAttached("a", "hd", "net1")
		if n := s.waitAllocatableSettled(vethPool); n != 0 {
			t.Fatalf("allocatable %d with the only device hot-plugged", n)
		}
		b := withLimit(s.NewPod("b"), vethPool, 1)
		b.Spec.NodeName = ""
		b.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": s.Env.NodeName}
		s.CreatePod(b)
		s.waitUnschedulable("b", "Insufficient "+string(vethPool))
		s.SetNetworks("a", "")
		s.WaitDetached("a", "net1")
		pod := s.WaitRunning("b")
		s.WaitEvent(pod, corev1.EventTypeNormal, "DeviceMovedIn", "npdev21")
	})

	// An exhausted pool is a Warning; the element is plugged as soon as a device frees up.
	t.Run("ExhaustedThenFrees", func(t *testing.T) {
		s := newScenario(t, "hot-full")
		s.onlyDevice("npdev22", "")
		s.createPoolNAD("hd", "10.216.0.0/24")
		s.RunningPod("a")
		c := s.RunningPod("c")
		s.SetNetworks("a", "hd@net1")
		s.WaitAttached("a", "hd", "net1")
		s.SetNetworks("c", "hd@net1")
		s.WaitEvent(c, corev1.EventTypeWarning, "PoolExhausted", "pool "+string(vethPool)+" has no free device")
		freed := time.Now()
		s.SetNetworks("a", "")
		s.WaitDetached("a", "net1")
		s.WaitAttached("c", "hd", "net1")
		t.Logf("c plugged %s after a's device was unplugged", time.Since(freed).Round(time.Millisecond))
	})

	// A pod deleted with a hot-plugged device: the device is back on the host, with its address.
	t.Run("PodDeleted", func(t *testing.T) {
		s := newScenario(t, "hot-del")
		s.onlyDevice("npdev23", "10.217.0.2/24")
		s.createPoolNAD("hd", "10.217.1.0/24")
		s.RunningPod("p")
		s.SetNetworks("p", "hd@net1")
		s.WaitAttached("p", "hd", "net1")
		ctx, cancel := s.Ctx()
		defer cancel()
		if err := s.Kube.CoreV1().Pods(s.Ns).Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		s.waitOnHost("npdev23", "10.217.0.2/24")
		s.waitDevice(vethPool, "npdev23", pluginapi.Healthy)
	})

	// netplug is SIGKILLed while an ADD of a device-backed element is in flight (Multus is
	// down, so the record naming the device is written and the ADD fails): after the restart
	// the device is still a's, b never gets it, and a gets it once Multus is back.
	t.Run("KilledBetweenPickAndStatus", func(t *testing.T) {
		s := newScenario(t, "hot-kill")
		s.onlyDevice("npdev24", "")
		s.createPoolNAD("hd", "10.218.0.0/24")
		a := s.RunningPod("a")
		b := s.RunningPod("b")
		restartMultus := fw.StopMultus(t)
		s.SetNetworks("a", "hd@net1")
		s.WaitEvent(a, corev1.EventTypeWarning, "PlugFailed", "net1")
		s.waitDevice(vethPool, "npdev24", pluginapi.Unhealthy) // picked: the record names it
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		np, err := fw.NetplugPod(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.KillNetplugController(ctx); err != nil {
			t.Fatal(err)
		}
		// Running again, not Ready: readiness needs Multus, which stays down for now.
		framework.WaitUntil(t, 90*time.Second, "netplug running again after the kill", func(ctx context.Context) (bool, string) {
			now, err := fw.NetplugPod(ctx)
			if err != nil {
				return false, err.Error()
			}
			for _, cs := range now.Status.ContainerStatuses {
				if cs.RestartCount > framework.Restarts(np) && cs.State.Running != nil {
					return true, ""
				}
			}
			return false, fmt.Sprintf("restarts %d", framework.Restarts(now))
		})
		s.waitDevice(vethPool, "npdev24", pluginapi.Unhealthy) // still out after the restart
		s.SetNetworks("b", "hd@net1")
		s.WaitEvent(b, corev1.EventTypeWarning, "PoolExhausted", "no free device")
		restartMultus()
		if _, err := fw.WaitNetplugReady(ctx, "", framework.Restarts(np)); err != nil {
			t.Fatal(err)
		}
		s.WaitAttached("a", "hd", "net1")
		s.expectNotOnHost("npdev24")
		if st, _ := framework.SecondaryStatus(s.MustGetPod("b")); len(st) != 0 {
			t.Fatalf("b got an interface while the only device is a's: %v", st)
		}
	})
}

// waitUnschedulable waits until the scheduler reports the pod unschedulable for reason.
func (s *scenario) waitUnschedulable(name, reason string) {
	s.T.Helper()
	framework.WaitUntil(s.T, 60*time.Second, "pod "+name+" Pending, unschedulable", func(context.Context) (bool, string) {
		p, err := s.GetPod(name)
		if err != nil {
			return false, err.Error()
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonUnschedulable {
				return strings.Contains(c.Message, reason), c.Message
			}
		}
		return false, string(p.Status.Phase)
	})
}
