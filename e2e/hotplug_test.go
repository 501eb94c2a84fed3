//go:build e2e

package e2e

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
)

// Issue 14: device-backed networks hot-plugged into running pods. Each scenario asserts the
// pod's netns, the host's links and the pool's accounting (the plugin's own ListAndWatch).

// createPoolNAD creates a host-device NAD tied to the veth pool by resourceName, naming no
// device (netplug picks one), with host-local IPAM in subnet.
func (s *scenario) createPoolNAD(name, subnet string) {
	s.t.Helper()
	s.createNAD(name, map[string]any{"type": "host-device", "ipam": map[string]any{
		"type": "host-local", "dataDir": s.env.IPAMDir, "ranges": []any{[]any{map[string]any{"subnet": subnet}}}}})
	ctx, cancel := s.ctx()
	defer cancel()
	nad, err := s.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(s.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	nad.Annotations = map[string]string{"k8s.v1.cni.cncf.io/resourceName": string(vethPool)}
	if _, err := s.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(s.ns).Update(ctx, nad, metav1.UpdateOptions{}); err != nil {
		s.t.Fatal(err)
	}
}

// onlyDevice makes name (with addr on the host) the pool's only healthy device, and waits until
// the plugin and the node's allocatable say so.
func (s *scenario) onlyDevice(name, addr string) {
	s.t.Helper()
	s.hostVeth(name, addr)
	s.waitDevice(vethPool, name, pluginapi.Healthy)
	waitUntil(s.t, 60*time.Second, name+" the only healthy device of the pool", func(ctx context.Context) (bool, string) {
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
	s.t.Helper()
	waitUntil(s.t, 90*time.Second, name+" back on the host", func(context.Context) (bool, string) {
		addrs, ok := hostAddrs(name)
		return ok && (addr == "" || slices.Contains(addrs, addr)), fmt.Sprintf("on host %v, addresses %v", ok, addrs)
	})
}

func (s *scenario) expectNotOnHost(name string) {
	s.t.Helper()
	if _, ok := hostAddrs(name); ok {
		s.t.Fatalf("%s is still on the host", name)
	}
}

func TestDeviceHotplug(t *testing.T) {
	if os.Getenv("NETPLUG_E2E_DEVICES") == "0" {
		t.Skip("NETPLUG_E2E_DEVICES=0")
	}
	// A device-backed element next to a bridge one, in one edit; then the device alone goes,
	// back to the host under its name with its address, and to the pool.
	t.Run("PlugAndUnplugMixed", func(t *testing.T) {
		s := fw.newScenario(t, "hot-mixed")
		s.onlyDevice("npdev20", "10.213.0.2/24")
		s.createPoolNAD("hd", "10.214.0.0/24")
		s.createBridgeNAD("br", "np14br", "10.214.1.0/24")
		pod := s.runningPod("p")
		s.setNetworks("p", "hd@net1,br@net2")
		hd := s.waitAttached("p", "hd", "net1")
		s.waitAttached("p", "br", "net2")
		if !inSubnet(hd.Status.IPs[0], "10.214.0.0/24") {
			t.Fatalf("net1 has %v, want an address of the NAD's IPAM", hd.Status.IPs)
		}
		s.expectNotOnHost("npdev20")
		s.waitDevice(vethPool, "npdev20", pluginapi.Unhealthy) // out of the kubelet's reach
		s.waitEvent(pod, corev1.EventTypeNormal, "NetworkPlugged", "with device npdev20 of pool "+string(vethPool))
		s.setNetworks("p", "br@net2")
		s.waitDetached("p", "net1")
		s.waitAttached("p", "br", "net2")
		s.waitOnHost("npdev20", "10.213.0.2/24")
		s.waitDevice(vethPool, "npdev20", pluginapi.Healthy)
		s.waitEvent(pod, corev1.EventTypeNormal, "DeviceReturned", "npdev20")
	})

	// The pool's last free device is hot-plugged: a pod asking for the resource by limit stays
	// Pending (the scheduler's reason) until it is unplugged, and then gets it at start.
	t.Run("LastDeviceThenPending", func(t *testing.T) {
		s := fw.newScenario(t, "hot-last")
		s.onlyDevice("npdev21", "")
		s.createPoolNAD("hd", "10.215.0.0/24")
		s.runningPod("a")
		s.setNetworks("a", "hd@net1")
		s.waitAttached("a", "hd", "net1")
		if n := s.waitAllocatableSettled(vethPool); n != 0 {
			t.Fatalf("allocatable %d with the only device hot-plugged", n)
		}
		b := withLimit(s.newPod("b"), vethPool, 1)
		b.Spec.NodeName = ""
		b.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": s.env.NodeName}
		s.createPod(b)
		s.waitUnschedulable("b", "Insufficient "+string(vethPool))
		s.setNetworks("a", "")
		s.waitDetached("a", "net1")
		pod := s.waitRunning("b")
		s.waitEvent(pod, corev1.EventTypeNormal, "DeviceMovedIn", "npdev21")
	})

	// An exhausted pool is a Warning; the element is plugged as soon as a device frees up.
	t.Run("ExhaustedThenFrees", func(t *testing.T) {
		s := fw.newScenario(t, "hot-full")
		s.onlyDevice("npdev22", "")
		s.createPoolNAD("hd", "10.216.0.0/24")
		s.runningPod("a")
		c := s.runningPod("c")
		s.setNetworks("a", "hd@net1")
		s.waitAttached("a", "hd", "net1")
		s.setNetworks("c", "hd@net1")
		s.waitEvent(c, corev1.EventTypeWarning, "PoolExhausted", "pool "+string(vethPool)+" has no free device")
		freed := time.Now()
		s.setNetworks("a", "")
		s.waitDetached("a", "net1")
		s.waitAttached("c", "hd", "net1")
		t.Logf("c plugged %s after a's device was unplugged", time.Since(freed).Round(time.Millisecond))
	})

	// A pod deleted with a hot-plugged device: the device is back on the host, with its address.
	t.Run("PodDeleted", func(t *testing.T) {
		s := fw.newScenario(t, "hot-del")
		s.onlyDevice("npdev23", "10.217.0.2/24")
		s.createPoolNAD("hd", "10.217.1.0/24")
		s.runningPod("p")
		s.setNetworks("p", "hd@net1")
		s.waitAttached("p", "hd", "net1")
		ctx, cancel := s.ctx()
		defer cancel()
		if err := s.kube.CoreV1().Pods(s.ns).Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		s.waitOnHost("npdev23", "10.217.0.2/24")
		s.waitDevice(vethPool, "npdev23", pluginapi.Healthy)
	})

	// netplug is SIGKILLed while an ADD of a device-backed element is in flight (Multus is
	// down, so the record naming the device is written and the ADD fails): after the restart
	// the device is still a's, b never gets it, and a gets it once Multus is back.
	t.Run("KilledBetweenPickAndStatus", func(t *testing.T) {
		s := fw.newScenario(t, "hot-kill")
		s.onlyDevice("npdev24", "")
		s.createPoolNAD("hd", "10.218.0.0/24")
		a := s.runningPod("a")
		b := s.runningPod("b")
		restartMultus := fw.stopMultus(t)
		s.setNetworks("a", "hd@net1")
		s.waitEvent(a, corev1.EventTypeWarning, "PlugFailed", "net1")
		s.waitDevice(vethPool, "npdev24", pluginapi.Unhealthy) // picked: the record names it
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		np, err := fw.netplugPod(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.killNetplugController(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := fw.waitNetplugReady(ctx, "", restarts(np)+1); err != nil {
			t.Fatal(err)
		}
		s.waitDevice(vethPool, "npdev24", pluginapi.Unhealthy) // still out after the restart
		s.setNetworks("b", "hd@net1")
		s.waitEvent(b, corev1.EventTypeWarning, "PoolExhausted", "no free device")
		restartMultus()
		s.waitAttached("a", "hd", "net1")
		s.expectNotOnHost("npdev24")
		if st, _ := secondaryStatus(s.mustGetPod("b")); len(st) != 0 {
			t.Fatalf("b got an interface while the only device is a's: %v", st)
		}
	})
}

// waitUnschedulable waits until the scheduler reports the pod unschedulable for reason.
func (s *scenario) waitUnschedulable(name, reason string) {
	s.t.Helper()
	waitUntil(s.t, 60*time.Second, "pod "+name+" Pending, unschedulable", func(context.Context) (bool, string) {
		p, err := s.getPod(name)
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

