//go:build e2e

package suite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netplug/netplug/e2e/framework"
)

// The local overlay's pools (manifests/overlays/local/config.json).
const (
	vethPool = corev1.ResourceName("netplug.io/veth")
	tunPool  = corev1.ResourceName("netplug.io/tun")
)

// hostVeth makes a veth pair on the host, npdevN (the pool's end, with addr) and npdpN (its
// peer, kept on the host so the pool's end has carrier). Never the uplink.
func hostVeth(t *testing.T, name, addr string) {
	t.Helper()
	peer := "npdp" + strings.TrimPrefix(name, "npdev")
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer}); err != nil {
		t.Fatalf("creating veth %s: %v", name, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(peer); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	for _, n := range []string{name, peer} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if n == name && addr != "" {
			a, err := netlink.ParseAddr(addr)
			if err != nil {
				t.Fatal(err)
			}
			if err := netlink.AddrAdd(l, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

func hostAddrs(name string) ([]string, bool) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, false
	}
	addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	return out, true
}

func (s *scenario) allocatable(ctx context.Context, r corev1.ResourceName) (int64, error) {
	node, err := s.Kube.CoreV1().Nodes().Get(ctx, s.Env.NodeName, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	q := node.Status.Allocatable[r]
	return q.Value(), nil
}

func (s *scenario) waitAllocatable(r corev1.ResourceName, ok func(int64) bool, what string) {
	framework.WaitUntil(s.T, 90*time.Second, what, func(ctx context.Context) (bool, string) {
		n, err := s.allocatable(ctx, r)
		if err != nil {
			return false, err.Error()
		}
		return ok(n), fmt.Sprintf("allocatable %s = %d", r, n)
	})
}

// devicePluginDir is the kubelet's device-plugin directory on the local cluster (hack/cluster/common.sh).
const devicePluginDir = "/var/lib/kubelet/device-plugins"

// pluginDevices asks netplug's device plugin of pool for its devices, as the kubelet does
// (ListAndWatch, first answer): health by device ID.
func pluginDevices(ctx context.Context, pool corev1.ResourceName) (map[string]string, error) {
	sock := filepath.Join(devicePluginDir, "netplug-"+strings.TrimPrefix(string(pool), "netplug.io/")+".sock")
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close() //nolint:errcheck // one call
	stream, err := pluginapi.NewDevicePluginClient(conn).ListAndWatch(ctx, &pluginapi.Empty{})
	if err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, d := range resp.GetDevices() {
		out[d.GetID()] = d.GetHealth()
	}
	return out, nil
}

// waitDevice waits until the pool's plugin reports device id with health: what the kubelet's
// device manager then knows (the node's allocatable lags behind it by a status update).
func (s *scenario) waitDevice(pool corev1.ResourceName, id, health string) {
	framework.WaitUntil(s.T, 60*time.Second, fmt.Sprintf("%s %s in %s", id, health, pool), func(ctx context.Context) (bool, string) {
		devs, err := pluginDevices(ctx, pool)
		if err != nil {
			return false, err.Error()
		}
		return devs[id] == health, fmt.Sprint(devs)
	})
}

func withLimit(pod *corev1.Pod, r corev1.ResourceName, n int64) *corev1.Pod {
	pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{r: *resource.NewQuantity(n, resource.DecimalSI)}
	return pod
}

func TestDevicePools(t *testing.T) {
	if os.Getenv("NETPLUG_E2E_DEVICES") != "1" {
		t.Skip("device pools are not yet verified on the local cluster: set NETPLUG_E2E_DEVICES=1 with devicePools in the local overlay's config.json")
	}
	t.Run("Allocatable", func(t *testing.T) {
		s := newScenario(t, "dev-alloc")
		hostVeth(t, "npdev10", "")
		s.waitAllocatable(vethPool, func(n int64) bool { return n >= 1 }, "the veth pool is allocatable")
		s.waitAllocatable(tunPool, func(n int64) bool { return n >= 1 }, "the tun pool is allocatable")
	})

	t.Run("NICWithoutNAD", func(t *testing.T) {
		s := newScenario(t, "dev-b")
		hostVeth(t, "npdev11", "10.211.0.2/24")
		s.waitDevice(vethPool, "npdev11", pluginapi.Healthy)
		pod := s.CreatePod(withLimit(s.NewPod("b"), vethPool, 1))
		pod = s.WaitRunning(pod.Name)
		s.WaitEvent(pod, corev1.EventTypeNormal, "DeviceMovedIn", "npdev11")
		framework.WaitUntil(t, 60*time.Second, "npdev11 in the pod with its address", func(context.Context) (bool, string) {
			l, ok := s.Links(pod.Name)["npdev11"]
			return ok && slices.Contains(l.Addrs, "10.211.0.2/24"), fmt.Sprintf("%+v", l)
		})
		if _, onHost := hostAddrs("npdev11"); onHost {
			t.Fatal("npdev11 is still on the host")
		}
		// Deleting the pod returns the NIC to the host under its name, with its address.
		if err := s.Kube.CoreV1().Pods(s.Ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		framework.WaitUntil(t, 90*time.Second, "npdev11 back on the host with its address", func(context.Context) (bool, string) {
			addrs, ok := hostAddrs("npdev11")
			return ok && slices.Contains(addrs, "10.211.0.2/24"), fmt.Sprint(addrs)
		})
	})

	t.Run("NICWithNAD", func(t *testing.T) {
		s := newScenario(t, "dev-a")
		hostVeth(t, "npdev12", "")
		s.waitDevice(vethPool, "npdev12", pluginapi.Healthy)
		// Flow a: Multus reads the NAD's resourceName and hands the allocated device to
		// host-device. A veth has no PCI address, so the NAD names the device (a pool of one).
		s.CreateNAD("hostdev", map[string]any{"cniVersion": "0.4.0", "type": "host-device", "device": "npdev12"})
		nad, err := s.Nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(s.Ns).Get(context.Background(), "hostdev", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nad.Annotations = map[string]string{"k8s.v1.cni.cncf.io/resourceName": string(vethPool)}
		if _, err := s.Nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(s.Ns).Update(context.Background(), nad, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := withLimit(s.NewPod("a"), vethPool, 1)
		pod.Annotations = map[string]string{"k8s.v1.cni.cncf.io/networks": s.Ns + "/hostdev@net1"}
		pod = s.CreatePod(pod)
		s.WaitRunning(pod.Name)
		if _, ok := s.Links(pod.Name)["net1"]; !ok {
			t.Fatal("the NAD's interface net1 is not in the pod")
		}
		if _, onHost := hostAddrs("npdev12"); onHost {
			t.Fatal("npdev12 is still on the host")
		}
	})

	t.Run("TunDevice", func(t *testing.T) {
		s := newScenario(t, "dev-tun")
		pod := withLimit(s.NewPod("tun"), tunPool, 1)
		pod.Spec.Containers[0].Command = []string{"sh", "-c", "test -c /dev/net/tun && sleep 3600"}
		pod = s.CreatePod(pod)
		s.WaitRunning(pod.Name)
	})

	t.Run("UnhealthyAndBack", func(t *testing.T) {
		s := newScenario(t, "dev-health")
		hostVeth(t, "npdev13", "")
		s.waitDevice(vethPool, "npdev13", pluginapi.Healthy)
		before, _ := s.allocatable(context.Background(), vethPool)
		l, err := netlink.LinkByName("npdev13")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkDel(l); err != nil {
			t.Fatal(err)
		}
		s.waitDevice(vethPool, "npdev13", pluginapi.Unhealthy)
		s.waitAllocatable(vethPool, func(n int64) bool { return n == before-1 }, "allocatable drops with npdev13 gone")
		hostVeth(t, "npdev13", "")
		s.waitDevice(vethPool, "npdev13", pluginapi.Healthy)
		s.waitAllocatable(vethPool, func(n int64) bool { return n == before }, "allocatable is back")
	})

	t.Run("KubeletRestart", func(t *testing.T) {
		s := newScenario(t, "dev-kubelet")
		hostVeth(t, "npdev14", "")
		s.waitDevice(vethPool, "npdev14", pluginapi.Healthy)
		kubelet, err := fw.FindComponent("kubelet", "kubelet")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := s.Ctx()
		defer cancel()
		if err := kubelet.Restart(ctx, time.Second, func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
		s.waitAllocatable(vethPool, func(n int64) bool { return n >= 1 }, "the pool registered again after the kubelet restart")
	})

	t.Run("Exhausted", func(t *testing.T) {
		s := newScenario(t, "dev-full")
		pod := withLimit(s.NewPod("full"), vethPool, 1000)
		pod.Spec.NodeName = "" // the scheduler's decision, and its reason
		pod.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": s.Env.NodeName}
		pod = s.CreatePod(pod)
		framework.WaitUntil(t, 60*time.Second, "the pod is Pending, unschedulable", func(ctx context.Context) (bool, string) {
			p, err := s.GetPod(pod.Name)
			if err != nil {
				return false, err.Error()
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonUnschedulable {
					return strings.Contains(c.Message, "Insufficient "+string(vethPool)), c.Message
				}
			}
			return false, string(p.Status.Phase)
		})
	})
}
