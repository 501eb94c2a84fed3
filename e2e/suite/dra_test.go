//go:build e2e

package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/netplug/netplug/e2e/framework"
)

// DRA (issue 15): network interfaces as netplug.io ResourceClaims, plugged by the NRI hook
// before the pod's containers start. Needs the v2 local cluster (resource.k8s.io/v1, NRI) and
// the local overlay's dra.enabled.
func TestDRA(t *testing.T) {
	if os.Getenv("NETPLUG_E2E_DRA") == "0" {
		t.Skip("NETPLUG_E2E_DRA=0")
	}
	runScenarios(t, []scenarioSpec{
		{name: "one claim is there before the first command", run: testDRAOneClaim},
		{name: "two claims on one pod", run: testDRATwoClaims},
		{name: "a bad config is reported and nothing is plugged", run: testDRABadConfig},
		{name: "pod deletion releases the claim", run: testDRARelease},
		{name: "a device claim that moves a pooled NIC in", run: testDRADeviceClaim},
		{name: "netplug restarted between prepare and sandbox start: the pod still gets its interfaces", disruptive: true, run: testDRARestartBeforeSandbox},
	})
}

// createClaim creates a ResourceClaim of class netplug.io-cni with one request per config.
func (s *scenario) createClaim(name string, configs ...map[string]any) {
	s.T.Helper()
	claim := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.Ns}}
	for i, cfg := range configs {
		req := "nic" + string(rune('0'+i))
		raw, err := json.Marshal(cfg)
		if err != nil {
			s.T.Fatal(err)
		}
		claim.Spec.Devices.Requests = append(claim.Spec.Devices.Requests, resourceapi.DeviceRequest{Name: req,
			Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: "netplug.io-cni"}})
		claim.Spec.Devices.Config = append(claim.Spec.Devices.Config, resourceapi.DeviceClaimConfiguration{Requests: []string{req},
			DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
				Driver: "netplug.io", Parameters: runtime.RawExtension{Raw: raw}}}})
	}
	ctx, cancel := s.Ctx()
	defer cancel()
	if _, err := s.Kube.ResourceV1().ResourceClaims(s.Ns).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		s.T.Fatalf("creating claim %s: %v", name, err)
	}
}

// claimPod is a pod using claims whose first command records whether ifaces exist.
func (s *scenario) claimPod(name string, claims []string, ifaces ...string) *corev1.Pod {
	pod := s.NewPod(name)
	// Through the scheduler: it allocates the claims; a pod bound by nodeName skips that and
	// waits forever for claims nobody allocates.
	pod.Spec.NodeName = ""
	pod.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": s.Env.NodeName}
	var check []string
	for _, i := range ifaces {
		check = append(check, "if [ -e /sys/class/net/"+i+" ]; then echo "+i+"=present; else echo "+i+"=absent; fi")
	}
	pod.Spec.Containers[0].Command = []string{"sh", "-c", strings.Join(check, "; ") + "; trap 'exit 0' TERM; sleep 3600 & wait"}
	for _, c := range claims {
		n := c
		pod.Spec.ResourceClaims = append(pod.Spec.ResourceClaims, corev1.PodResourceClaim{Name: c, ResourceClaimName: &n})
		pod.Spec.Containers[0].Resources.Claims = append(pod.Spec.Containers[0].Resources.Claims, corev1.ResourceClaim{Name: c})
	}
	return pod
}

func (s *scenario) inlineBridge(bridge, subnet string) map[string]any {
	cfg := s.BridgeConfig(bridge, subnet)
	cfg["cniVersion"], cfg["name"] = "1.0.0", s.Ns+"-"+bridge
	return cfg
}

func (s *scenario) podLog(name string) string {
	ctx, cancel := s.Ctx()
	defer cancel()
	data, err := s.Kube.CoreV1().Pods(s.Ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		s.T.Fatalf("logs of %s: %v", name, err)
	}
	return string(data)
}

func (s *scenario) waitClaimDevice(name string, index int) resourceapi.AllocatedDeviceStatus {
	var got resourceapi.AllocatedDeviceStatus
	framework.WaitUntil(s.T, time.Minute, "claim "+name+" status.devices", func(ctx context.Context) (bool, string) {
		c, err := s.Kube.ResourceV1().ResourceClaims(s.Ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if len(c.Status.Devices) <= index {
			return false, "no device status yet"
		}
		got = c.Status.Devices[index]
		return true, ""
	})
	return got
}

// expectNetworkData checks that a device's networkData matches the link in the pod's netns.
func (s *scenario) expectNetworkData(pod string, d resourceapi.AllocatedDeviceStatus) {
	s.T.Helper()
	if d.NetworkData == nil {
		s.T.Fatalf("device %s has no networkData", d.Device)
	}
	link, ok := s.Links(pod)[d.NetworkData.InterfaceName]
	if !ok {
		s.T.Fatalf("networkData names %s, which the pod does not have", d.NetworkData.InterfaceName)
	}
	if !strings.EqualFold(link.MAC, d.NetworkData.HardwareAddress) || !slices.Equal(link.Addrs, d.NetworkData.IPs) {
		s.T.Fatalf("networkData %+v, link %+v", d.NetworkData, link)
	}
	if len(d.Conditions) == 0 || d.Conditions[0].Type != "Ready" || d.Conditions[0].Status != metav1.ConditionTrue || d.Data == nil {
		s.T.Fatalf("device status %+v", d)
	}
}

func testDRAOneClaim(t *testing.T) {
	s := newScenario(t, "dra1")
	s.createClaim("c1", map[string]any{"config": s.inlineBridge("npdra1", "10.201.1.0/24"), "interface": "net1"})
	s.CreatePod(s.claimPod("p", []string{"c1"}, "net1"))
	s.WaitRunning("p")
	if log := s.podLog("p"); !strings.Contains(log, "net1=present") {
		t.Fatalf("the first command did not see net1: %q", log)
	}
	s.expectNetworkData("p", s.waitClaimDevice("c1", 0))
}

func testDRATwoClaims(t *testing.T) {
	s := newScenario(t, "dra2")
	s.CreateBridgeNAD("br", "npdra2", "10.201.2.0/24")
	s.createClaim("a", map[string]any{"network": "br", "interface": "net1"})
	s.createClaim("b", map[string]any{"config": s.inlineBridge("npdra3", "10.201.3.0/24"), "interface": "net2"})
	s.CreatePod(s.claimPod("p", []string{"a", "b"}, "net1", "net2"))
	s.WaitRunning("p")
	if log := s.podLog("p"); !strings.Contains(log, "net1=present") || !strings.Contains(log, "net2=present") {
		t.Fatalf("log %q", log)
	}
	s.expectNetworkData("p", s.waitClaimDevice("a", 0))
	s.expectNetworkData("p", s.waitClaimDevice("b", 0))
	status, err := framework.SecondaryStatus(s.MustGetPod("p"))
	if err != nil || len(status) < 2 {
		t.Fatalf("network-status %v %v: the claims' interfaces are listed", status, err)
	}
}

func testDRABadConfig(t *testing.T) {
	s := newScenario(t, "drabad")
	s.createClaim("bad", map[string]any{"network": "br", "interface": "net1", "default-route": []string{"10.0.0.1"}})
	pod := s.CreatePod(s.claimPod("p", []string{"bad"}, "net1"))
	s.waitKubeletEvent(pod, corev1.EventTypeWarning, "FailedPrepareDynamicResources", `unknown field "default-route"`)
	if p := s.MustGetPod("p"); p.Status.Phase == corev1.PodRunning {
		t.Fatal("a pod with a bad claim runs")
	}
	ctx, cancel := s.Ctx()
	defer cancel()
	c, err := s.Kube.ResourceV1().ResourceClaims(s.Ns).Get(ctx, "bad", metav1.GetOptions{})
	if err != nil || len(c.Status.Devices) != 0 {
		t.Fatalf("claim %v %v: nothing is plugged or reported", c.Status.Devices, err)
	}
}

func testDRARelease(t *testing.T) {
	s := newScenario(t, "drarel")
	s.CreateBridgeNAD("br", "npdra4", "10.201.4.0/24")
	s.createClaim("c", map[string]any{"network": "br", "interface": "net1"})
	s.CreatePod(s.claimPod("p", []string{"c"}, "net1"))
	s.WaitRunning("p")
	s.waitClaimDevice("c", 0)
	ctx, cancel := s.Ctx()
	defer cancel()
	if err := s.Kube.CoreV1().Pods(s.Ns).Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.WaitIPAM("br") // DEL done: host-local holds no address of the pod
}

// waitKubeletEvent waits for an event on the pod from any component (the kubelet reports a
// failed prepare), of type and reason, whose message contains contains.
func (s *scenario) waitKubeletEvent(pod *corev1.Pod, eventType, reason, contains string) {
	s.T.Helper()
	framework.WaitUntil(s.T, framework.PlugTimeout, fmt.Sprintf("%s event %s (%q) on pod %s", eventType, reason, contains, pod.Name), func(ctx context.Context) (bool, string) {
		list, err := s.Kube.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{
			FieldSelector: fields.Set{"involvedObject.uid": string(pod.UID)}.String()})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range list.Items {
			if e.Type == eventType && e.Reason == reason && strings.Contains(e.Message, contains) {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, fmt.Sprintf("events so far: %q", seen)
	})
}

// waitSliceNIC waits until the node's netplug.io ResourceSlices publish the pool NIC ifName (in
// pool "<node>/nic", attributes ifName, pool, virtual), and returns its device name.
func (s *scenario) waitSliceNIC(ifName string) string {
	s.T.Helper()
	var name string
	// Up to two minutes: a kubelet restart (TestDevicePools restarts it just before) deletes the
	// node's slices, and the driver's slice controller re-creates them after its sync delay.
	framework.WaitUntil(s.T, 2*time.Minute, "ResourceSlice device of "+ifName, func(ctx context.Context) (bool, string) {
		list, err := s.Kube.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{
			FieldSelector: fields.Set{"spec.driver": "netplug.io", "spec.nodeName": s.Env.NodeName}.String()})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, sl := range list.Items {
			for _, d := range sl.Spec.Devices {
				seen = append(seen, sl.Spec.Pool.Name+"/"+d.Name)
				a := d.Attributes
				if sl.Spec.Pool.Name != s.Env.NodeName+"/nic" || a["ifName"].StringValue == nil || *a["ifName"].StringValue != ifName {
					continue
				}
				if a["pool"].StringValue == nil || *a["pool"].StringValue != string(vethPool) || a["virtual"].BoolValue == nil || !*a["virtual"].BoolValue {
					return false, fmt.Sprintf("device %s has attributes %v", d.Name, a)
				}
				name = d.Name
				return true, ""
			}
		}
		return false, fmt.Sprintf("devices %v", seen)
	})
	return name
}

// createNICClaim creates a ResourceClaim of class netplug.io-nic for the pool NIC ifName (a
// selector on its ifName attribute), with an opaque config when cfg is not nil.
func (s *scenario) createNICClaim(name, ifName string, cfg map[string]any) {
	s.T.Helper()
	claim := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.Ns}}
	claim.Spec.Devices.Requests = []resourceapi.DeviceRequest{{Name: "nic", Exactly: &resourceapi.ExactDeviceRequest{
		DeviceClassName: "netplug.io-nic",
		Selectors: []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{
			Expression: `device.attributes["netplug.io"].ifName == "` + ifName + `"`}}}}}}
	if cfg != nil {
		raw, err := json.Marshal(cfg)
		if err != nil {
			s.T.Fatal(err)
		}
		claim.Spec.Devices.Config = []resourceapi.DeviceClaimConfiguration{{Requests: []string{"nic"},
			DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
				Driver: "netplug.io", Parameters: runtime.RawExtension{Raw: raw}}}}}
	}
	ctx, cancel := s.Ctx()
	defer cancel()
	if _, err := s.Kube.ResourceV1().ResourceClaims(s.Ns).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		s.T.Fatalf("creating claim %s: %v", name, err)
	}
}

// waitClaimStatusEmpty waits until the claim has no status.devices left (unprepare cleared them).
func (s *scenario) waitClaimStatusEmpty(name string) {
	s.T.Helper()
	framework.WaitUntil(s.T, 90*time.Second, "claim "+name+" status.devices cleared", func(ctx context.Context) (bool, string) {
		c, err := s.Kube.ResourceV1().ResourceClaims(s.Ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(c.Status.Devices) == 0, fmt.Sprintf("%+v", c.Status.Devices)
	})
}

// A claim of class netplug.io-nic gets a pool veth moved in, renamed net1, with its host
// address, before the first command; it is out of the kubelet's reach while the claim holds it,
// and back on the host (name, address) and in the pool once the pod is gone.
func testDRADeviceClaim(t *testing.T) {
	s := newScenario(t, "dradev")
	s.hostVeth("npdev30", "10.201.8.2/24")
	s.waitDevice(vethPool, "npdev30", pluginapi.Healthy)
	device := s.waitSliceNIC("npdev30")
	if device != "nic-npdev30" {
		t.Fatalf("device name %q, want nic-npdev30", device)
	}
	s.createNICClaim("c", "npdev30", map[string]any{"interface": "net1"})
	s.CreatePod(s.claimPod("p", []string{"c"}, "net1"))
	s.WaitRunning("p")
	if log := s.podLog("p"); !strings.Contains(log, "net1=present") {
		t.Fatalf("the first command did not see net1: %q", log)
	}
	if l, ok := s.Links("p")["net1"]; !ok || !slices.Contains(l.Addrs, "10.201.8.2/24") {
		t.Fatalf("net1 in the pod: %+v %v, want the NIC with its host address", l, ok)
	}
	s.expectNotOnHost("npdev30")
	s.waitDevice(vethPool, "npdev30", pluginapi.Unhealthy) // the claim's: out of the kubelet's reach
	d := s.waitClaimDevice("c", 0)
	if d.Pool != s.Env.NodeName+"/nic" || d.Device != device {
		t.Fatalf("status.devices[0] is %s/%s", d.Pool, d.Device)
	}
	s.expectNetworkData("p", d)
	status, err := framework.SecondaryStatus(s.MustGetPod("p"))
	listed := false
	for _, e := range status {
		listed = listed || (e.Interface == "net1" && e.Name == s.Ns+"/c")
	}
	if err != nil || !listed {
		t.Fatalf("network-status %+v %v: net1 listed as %s/c", status, err, s.Ns)
	}
	ctx, cancel := s.Ctx()
	defer cancel()
	if err := s.Kube.CoreV1().Pods(s.Ns).Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.waitOnHost("npdev30", "10.201.8.2/24")
	s.waitDevice(vethPool, "npdev30", pluginapi.Healthy) // unprepared: the pool's again
	s.waitClaimStatusEmpty("c")
}

// netplug is SIGKILLed after the kubelet prepared the pod's claims and before its sandbox
// starts. The sandbox is held back by Multus (the pod's annotation names a NAD that does not
// exist yet: its CNI ADD fails before the runtime calls NRI), so no attempt reaches the NRI hook
// while netplug is down. Once netplug runs again and the NAD exists, the sandbox starts, and the
// restarted hook finds the prepared claims in its store: the pod has the CNI claim's net1 and
// the pool NIC as net2, whose reservation outlived the restart.
func testDRARestartBeforeSandbox(t *testing.T) {
	s := newScenario(t, "drarestart")
	s.hostVeth("npdev31", "10.201.9.2/24")
	s.waitDevice(vethPool, "npdev31", pluginapi.Healthy)
	s.waitSliceNIC("npdev31")
	s.CreateBridgeNAD("br", "npdra5", "10.201.5.0/24")
	s.createClaim("a", map[string]any{"network": "br", "interface": "net1"})
	s.createNICClaim("d", "npdev31", map[string]any{"interface": "net2"})
	pod := s.claimPod("p", []string{"a", "d"}, "net1", "net2")
	pod.Annotations = map[string]string{"k8s.v1.cni.cncf.io/networks": "gate@net3"}
	pod = s.CreatePod(pod)
	// The sandbox fails at Multus: the claims are prepared by then.
	s.waitKubeletEvent(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", "gate")
	s.waitDevice(vethPool, "npdev31", pluginapi.Unhealthy) // reserved by the prepared claim d

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	np, err := fw.NetplugPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.KillNetplugController(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := fw.WaitNetplugReady(ctx, "", framework.Restarts(np)); err != nil {
		t.Fatal(err)
	}
	s.waitDevice(vethPool, "npdev31", pluginapi.Unhealthy) // still the claim's after the restart
	if p := s.MustGetPod("p"); p.Status.Phase == corev1.PodRunning {
		t.Fatal("the pod runs although its sandbox cannot start yet")
	}

	s.CreateBridgeNAD("gate", "npdra7", "10.201.7.0/24")
	s.WaitRunning("p")
	if log := s.podLog("p"); !strings.Contains(log, "net1=present") || !strings.Contains(log, "net2=present") {
		t.Fatalf("log %q: the first command sees both claims' interfaces", log)
	}
	s.expectNetworkData("p", s.waitClaimDevice("a", 0))
	s.expectNetworkData("p", s.waitClaimDevice("d", 0))
	links := s.Links("p")
	if l, ok := links["net2"]; !ok || !slices.Contains(l.Addrs, "10.201.9.2/24") {
		t.Fatalf("net2 %+v %v: the pool NIC with its host address", l, ok)
	}
	if _, ok := links["net3"]; !ok {
		t.Fatal("Multus's net3 (the annotation) is missing")
	}
	s.expectNotOnHost("npdev31")
}
