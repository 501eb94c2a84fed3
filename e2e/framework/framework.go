//go:build e2e

// Package framework is what netplug's end-to-end tests share (e2e/suite, e2e/soak, e2e/bench): a
// Framework built from the env file of the local cluster of hack/cluster/up.sh, with netplug
// deployed as its DaemonSet (hack/run/e2e.sh does all of it: make e2e), and per-test Scenarios
// that check the pod's network-status and the real links, addresses and MACs inside the pod's
// network namespace.
//
// Run against a running cluster: make e2e-run (or go test -tags e2e -p 1 -v ./e2e/...). The
// tests run as root on the node: they read pod network namespaces, the IPAM state and /proc.
package framework

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/netplug/netplug/pkg/cri"
)

const (
	// defaultEnvFile is where hack/cluster/up.sh writes the cluster's settings.
	defaultEnvFile = "/var/lib/netplug-e2e/env"

	NetplugNamespace = "netplug-system"
	NetplugDaemonSet = "netplug"
	NetplugSelector  = "app.kubernetes.io/name=netplug"
	NetplugContainer = "netplug"
	netplugComponent = "netplug" // the source component of netplug's events
	// netplugConfigVolume is the DaemonSet's volume of the (hash-named) ConfigMap.
	netplugConfigVolume = "config"

	PollInterval = 200 * time.Millisecond
	// ApiTimeout bounds every single API call the suite makes.
	ApiTimeout = 15 * time.Second
	// PlugTimeout bounds how long a scenario waits for netplug to converge on an edit.
	PlugTimeout = 60 * time.Second
)

// ClusterEnv is what the suite needs to know about the local cluster.
type ClusterEnv struct {
	ClusterDir   string
	Kubeconfig   string
	CRISocket    string
	MultusSocket string
	NodeName     string
	BusyboxImage string
	LogDir       string
	RunDir       string
	// MacvlanMaster is the host link macvlan test networks hang off (a veth, never eth0).
	MacvlanMaster string
	// IPAMDir is the host-local dataDir of the suite's networks, apart from the pod network's.
	IPAMDir string
}

// envPath is the KEY=value file cluster-up writes: $NETPLUG_E2E_ENV, else the default path.
func envPath() string {
	if path := os.Getenv("NETPLUG_E2E_ENV"); path != "" {
		return path
	}
	return defaultEnvFile
}

// loadEnv reads the KEY=value file cluster-up writes ($NETPLUG_E2E_ENV, else the default path).
// The file describes the cluster the suite must talk to, so its values win; the process
// environment only fills keys the file lacks.
func loadEnv() (ClusterEnv, error) {
	path := envPath()
	values := map[string]string{}
	file, err := os.Open(path)
	if err != nil {
		return ClusterEnv{}, fmt.Errorf("reading the cluster env file (is the cluster up? make cluster-up): %w", err)
	}
	defer func() { _ = file.Close() }()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			values[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return ClusterEnv{}, fmt.Errorf("reading %s: %w", path, err)
	}
	get := func(key string) string {
		if v, ok := values[key]; ok && v != "" {
			return v
		}
		return os.Getenv(key)
	}
	env := ClusterEnv{
		ClusterDir:    get("CLUSTER_DIR"),
		Kubeconfig:    get("KUBECONFIG"),
		CRISocket:     get("CRI_SOCKET"),
		MultusSocket:  get("MULTUS_SOCKET"),
		NodeName:      get("NODE_NAME"),
		BusyboxImage:  get("BUSYBOX_IMAGE"),
		LogDir:        get("LOG_DIR"),
		RunDir:        get("RUN_DIR"),
		MacvlanMaster: get("MACVLAN_MASTER"),
	}
	for key, v := range map[string]string{"CLUSTER_DIR": env.ClusterDir, "KUBECONFIG": env.Kubeconfig,
		"CRI_SOCKET": env.CRISocket, "MULTUS_SOCKET": env.MultusSocket, "NODE_NAME": env.NodeName,
		"BUSYBOX_IMAGE": env.BusyboxImage} {
		if v == "" {
			return ClusterEnv{}, fmt.Errorf("%s: %s is not set", path, key)
		}
	}
	if env.LogDir == "" {
		env.LogDir = filepath.Join(env.ClusterDir, "logs")
	}
	if env.RunDir == "" {
		env.RunDir = filepath.Join(env.ClusterDir, "run")
	}
	if env.MacvlanMaster == "" {
		env.MacvlanMaster = "e2emv0"
	}
	env.IPAMDir = filepath.Join(env.ClusterDir, "cni", "ipam-e2e")
	return env, nil
}

// Framework holds the clients every scenario shares. Its methods are safe for parallel tests.
type Framework struct {
	Env  ClusterEnv
	Kube kubernetes.Interface
	Nads nadclient.Interface
	Cri  *cri.Client
}

// NewFramework connects to the cluster and checks that netplug runs on the node.
func NewFramework() (*Framework, error) {
	env, err := loadEnv()
	if err != nil {
		return nil, err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", env.Kubeconfig, err)
	}
	rc.QPS, rc.Burst = 100, 200 // the burst scenario creates and patches 20 pods at once
	rc.Timeout = ApiTimeout
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	nads, err := nadclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("creating the NAD client: %w", err)
	}
	criClient, err := cri.New(env.CRISocket, 10*time.Second)
	if err != nil {
		return nil, err
	}
	f := &Framework{Env: env, Kube: kube, Nads: nads, Cri: criClient}
	if err := os.MkdirAll(env.IPAMDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the IPAM directory: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := f.WaitNetplugReady(ctx, "", -1); err != nil {
		return nil, fmt.Errorf("netplug is not running on node %s (deploy it: make image && OVERLAY=local make deploy): %w",
			env.NodeName, err)
	}
	return f, nil
}

// Close releases the CRI connection.
func (f *Framework) Close() { _ = f.Cri.Close() }

// ---------------------------------------------------------------------------------------------
// Scenarios: a namespace each, a timer, and diagnostics on failure.

// Scenario is one test's view of the framework: its namespace, and helpers that fail the test.
type Scenario struct {
	*Framework
	T      *testing.T
	Ns     string
	start  time.Time
	dumped sync.Once
	// afterPods run once the scenario's pods are gone (host fixtures a pod may hold).
	afterPods []func()
}

// AfterPods runs f once the scenario's pods are gone, before its namespace is deleted: for host
// fixtures that a pod may hold until then.
func (s *Scenario) AfterPods(f func()) { s.afterPods = append(s.afterPods, f) }

// NewScenario creates a namespace for t and registers, in this order of execution at the end:
// diagnostics if t failed, deletion of the namespace's pods and the namespace, the timing line.
func (f *Framework) NewScenario(t *testing.T, short string) *Scenario {
	s := &Scenario{Framework: f, T: t, Ns: "e2e-" + short + "-" + rand.String(5), start: time.Now()}
	t.Cleanup(func() {
		d := time.Since(s.start)
		durations.Store(t.Name(), d)
		t.Logf("SCENARIO %s took %s", t.Name(), d.Round(10*time.Millisecond))
	})
	ctx, cancel := context.WithTimeout(context.Background(), ApiTimeout)
	defer cancel()
	_, err := f.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: s.Ns, Labels: map[string]string{"netplug-e2e": "true"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", s.Ns, err)
	}
	t.Cleanup(s.deleteNamespace)
	t.Cleanup(s.DumpIfFailed)
	// The ServiceAccount admission refuses pods until "default" exists; the controller creates
	// it a moment after the namespace, so do not wait for it.
	_, err = f.Kube.CoreV1().ServiceAccounts(s.Ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating the default service account in %s: %v", s.Ns, err)
	}
	t.Logf("namespace %s", s.Ns)
	return s
}

// deleteNamespace deletes the scenario's pods and waits until they are gone (so their CNI DELs
// and netplug's cleanup happen while the test still watches), then the namespace. Pods are
// unplugged first (unless the test failed, when what is attached may be the evidence), so that
// one scenario's leftovers never occupy netplug while the next runs; scenario 11 checks what
// happens to the interfaces of a pod deleted with them.
func (s *Scenario) deleteNamespace() {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if !s.T.Failed() {
		s.unplugAll(ctx)
	}
	pods := s.Kube.CoreV1().Pods(s.Ns)
	list, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		s.T.Logf("cleanup: listing pods of %s: %v", s.Ns, err)
	}
	if list != nil {
		for _, p := range list.Items {
			grace := int64(1)
			if p.Spec.NodeName != s.Env.NodeName {
				grace = 0 // no kubelet will ever confirm the deletion
			}
			if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil && !apierrors.IsNotFound(err) {
				s.T.Logf("cleanup: deleting pod %s/%s: %v", s.Ns, p.Name, err)
			}
		}
	}
	if _, err := Poll(ctx, PollInterval, 0, func(ctx context.Context) (bool, string) {
		list, err := pods.List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 0, "pods left"
	}); err != nil {
		s.T.Logf("cleanup: pods of %s still there after 90s", s.Ns)
	}
	for _, f := range s.afterPods {
		f()
	}
	delCtx, delCancel := context.WithTimeout(context.Background(), ApiTimeout)
	defer delCancel()
	if err := s.Kube.CoreV1().Namespaces().Delete(delCtx, s.Ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		s.T.Logf("cleanup: deleting namespace %s: %v", s.Ns, err)
	}
}

// unplugAll removes the network selection of the scenario's pods on the node and waits, for at
// most 20 s, until netplug has unplugged everything; it only logs what is left.
func (s *Scenario) unplugAll(ctx context.Context) {
	pods := s.Kube.CoreV1().Pods(s.Ns)
	list, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		s.T.Logf("cleanup: listing pods of %s: %v", s.Ns, err)
		return
	}
	patch := []byte(`{"metadata":{"annotations":{"` + nadv1.NetworkAttachmentAnnot + `":null}}}`)
	var plugged []string
	for _, p := range list.Items {
		if p.Spec.NodeName != s.Env.NodeName || p.Annotations[nadv1.NetworkAttachmentAnnot] == "" {
			continue
		}
		if _, err := pods.Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			s.T.Logf("cleanup: unplugging pod %s: %v", p.Name, err)
			continue
		}
		plugged = append(plugged, p.Name)
	}
	_, _ = Poll(ctx, PollInterval, 20*time.Second, func(ctx context.Context) (bool, string) {
		var left []string
		for _, name := range plugged {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				continue
			}
			if st, err := SecondaryStatus(p); err != nil || len(st) > 0 {
				left = append(left, name)
			}
		}
		plugged = left
		return len(plugged) == 0, "interfaces left"
	})
	if len(plugged) > 0 {
		s.T.Logf("cleanup: pods %v still had secondary interfaces after 20s", plugged)
	}
}

// Ctx returns a context bounded by apiTimeout for one call.
func (s *Scenario) Ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), ApiTimeout)
}

// ---------------------------------------------------------------------------------------------
// NetworkAttachmentDefinitions.

// CniName is the CNI network name of a NAD of the scenario: unique per namespace, so that its
// host-local allocations live in a directory of their own.
func (s *Scenario) CniName(nad string) string { return s.Ns + "-" + nad }

// CreateNAD creates a NAD whose spec.config is config (a single-plugin CNI config) with
// cniVersion and name filled in.
func (s *Scenario) CreateNAD(name string, config map[string]any) {
	s.T.Helper()
	config["cniVersion"] = "0.4.0"
	config["name"] = s.CniName(name)
	raw, err := json.Marshal(config)
	if err != nil {
		s.T.Fatalf("encoding the config of NAD %s: %v", name, err)
	}
	ctx, cancel := s.Ctx()
	defer cancel()
	_, err = s.Nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(s.Ns).Create(ctx, &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: string(raw)},
	}, metav1.CreateOptions{})
	if err != nil {
		s.T.Fatalf("creating NAD %s/%s: %v", s.Ns, name, err)
	}
}

// BridgeConfig is a bridge network on the host bridge named bridge (np*, which cluster-down
// deletes) with host-local IPAM in subnet.
func (s *Scenario) BridgeConfig(bridge, subnet string) map[string]any {
	if !strings.HasPrefix(bridge, "np") || len(bridge) > 15 {
		s.T.Fatalf("test bridge %q must be named np* and be at most 15 characters", bridge)
	}
	return map[string]any{
		"type":   "bridge",
		"bridge": bridge,
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": s.Env.IPAMDir,
			"ranges":  []any{[]any{map[string]any{"subnet": subnet}}},
		},
	}
}

// CreateBridgeNAD creates a bridge NAD with host-local IPAM (see bridgeConfig).
func (s *Scenario) CreateBridgeNAD(name, bridge, subnet string) {
	s.T.Helper()
	s.CreateNAD(name, s.BridgeConfig(bridge, subnet))
}

// IpamAllocations lists, sorted, the addresses host-local holds for the scenario's NAD.
func (s *Scenario) IpamAllocations(nad string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.Env.IPAMDir, s.CniName(nad)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading IPAM state of %s: %w", nad, err)
	}
	var ips []string
	for _, e := range entries {
		if IpOf(e.Name()) != "" { // the rest is "lock" and "last_reserved_ip.N"
			ips = append(ips, e.Name())
		}
	}
	sort.Strings(ips)
	return ips, nil
}

// WaitIPAM waits until host-local holds exactly the addresses want for the NAD: hot-plugged
// addresses are allocated while attached and released once unplugged.
func (s *Scenario) WaitIPAM(nad string, want ...string) {
	s.T.Helper()
	want = slices.Clone(want)
	sort.Strings(want)
	WaitUntil(s.T, 30*time.Second, fmt.Sprintf("IPAM allocations of %s to be %v", nad, want), func(context.Context) (bool, string) {
		got, err := s.IpamAllocations(nad)
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want), fmt.Sprintf("allocated: %v", got)
	})
}

// ---------------------------------------------------------------------------------------------
// Pods.

// NewPod is a busybox pod on the node that exits at once on SIGTERM.
func (s *Scenario) NewPod(name string) *corev1.Pod {
	grace := int64(1)
	automount := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.Ns, Labels: map[string]string{"app": "netplug-e2e"}},
		Spec: corev1.PodSpec{
			NodeName:                      s.Env.NodeName,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  &automount,
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           s.Env.BusyboxImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"},
			}},
		},
	}
}

// CreatePod creates pod (from newPod, possibly changed) without waiting for it.
func (s *Scenario) CreatePod(pod *corev1.Pod) *corev1.Pod {
	s.T.Helper()
	ctx, cancel := s.Ctx()
	defer cancel()
	created, err := s.Kube.CoreV1().Pods(s.Ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		s.T.Fatalf("creating pod %s/%s: %v", s.Ns, pod.Name, err)
	}
	return created
}

// RunningPod creates a pod named name and waits until it runs.
func (s *Scenario) RunningPod(name string) *corev1.Pod {
	s.T.Helper()
	s.CreatePod(s.NewPod(name))
	return s.WaitRunning(name)
}

// GetPod reads the pod from the API.
func (s *Scenario) GetPod(name string) (*corev1.Pod, error) {
	ctx, cancel := s.Ctx()
	defer cancel()
	return s.Kube.CoreV1().Pods(s.Ns).Get(ctx, name, metav1.GetOptions{})
}

func (s *Scenario) MustGetPod(name string) *corev1.Pod {
	s.T.Helper()
	pod, err := s.GetPod(name)
	if err != nil {
		s.T.Fatalf("getting pod %s/%s: %v", s.Ns, name, err)
	}
	return pod
}

// WaitRunning waits until the pod is Running with all containers ready.
func (s *Scenario) WaitRunning(name string) *corev1.Pod {
	s.T.Helper()
	var pod *corev1.Pod
	WaitUntil(s.T, 90*time.Second, "pod "+name+" to run", func(ctx context.Context) (bool, string) {
		p, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pod = p
		if p.Status.Phase != corev1.PodRunning {
			return false, "phase " + string(p.Status.Phase)
		}
		for _, c := range p.Status.ContainerStatuses {
			if !c.Ready {
				return false, "container " + c.Name + " not ready"
			}
		}
		return true, ""
	})
	return pod
}

// patchAnnotations merge-patches the pod's annotations; a nil value removes the key.
func (s *Scenario) patchAnnotations(name string, annotations map[string]*string) *corev1.Pod {
	s.T.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		s.T.Fatalf("encoding patch: %v", err)
	}
	ctx, cancel := s.Ctx()
	defer cancel()
	pod, err := s.Kube.CoreV1().Pods(s.Ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		s.T.Fatalf("patching annotations of pod %s/%s: %v", s.Ns, name, err)
	}
	return pod
}

// SetNetworks sets the pod's network-selection annotation; "" removes it.
func (s *Scenario) SetNetworks(name, selection string) *corev1.Pod {
	s.T.Helper()
	var v *string
	if selection != "" {
		v = &selection
	}
	return s.patchAnnotations(name, map[string]*string{nadv1.NetworkAttachmentAnnot: v})
}

// Touch changes an unrelated annotation: an update event that must not change any interface.
func (s *Scenario) Touch(name string) {
	s.T.Helper()
	v := time.Now().Format(time.RFC3339Nano)
	s.patchAnnotations(name, map[string]*string{"netplug-e2e/touched": &v})
}

// Element is one entry of the JSON form of the network-selection annotation.
type Element struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace,omitempty"`
	Interface string   `json:"interface,omitempty"`
	IPs       []string `json:"ips,omitempty"`
	MAC       string   `json:"mac,omitempty"`
}

// Selection renders elements as the annotation's JSON list form.
func Selection(elements ...Element) string {
	raw, err := json.Marshal(elements)
	if err != nil {
		panic(err) // plain structs always encode
	}
	return string(raw)
}

// ---------------------------------------------------------------------------------------------
// network-status and what the kernel shows.

// NetworkStatus parses the pod's network-status annotation.
func NetworkStatus(pod *corev1.Pod) ([]nadv1.NetworkStatus, error) {
	raw := pod.Annotations[nadv1.NetworkStatusAnnot]
	if raw == "" {
		return nil, nil
	}
	var entries []nadv1.NetworkStatus
	if err := json.Unmarshal([]byte(raw), &entries); err != nil {
		return nil, fmt.Errorf("malformed network-status %q: %w", raw, err)
	}
	return entries, nil
}

// SecondaryStatus returns the non-default network-status entries by interface, and an error
// if an interface appears twice.
func SecondaryStatus(pod *corev1.Pod) (map[string]nadv1.NetworkStatus, error) {
	entries, err := NetworkStatus(pod)
	if err != nil {
		return nil, err
	}
	out := map[string]nadv1.NetworkStatus{}
	for _, e := range entries {
		if e.Default {
			continue
		}
		if _, dup := out[e.Interface]; dup {
			return nil, fmt.Errorf("network-status lists interface %q twice: %s", e.Interface, pod.Annotations[nadv1.NetworkStatusAnnot])
		}
		out[e.Interface] = e
	}
	return out, nil
}

// Attached is an interface as network-status reports it and as the kernel shows it.
type Attached struct {
	Status nadv1.NetworkStatus
	Link   Link
}

// IP is the interface's first address without prefix length.
func (a Attached) IP() string {
	if len(a.Status.IPs) == 0 {
		return ""
	}
	return IpOf(a.Status.IPs[0])
}

// CheckAttached reports whether network-status lists iface as network nad of the scenario's
// namespace and the pod's netns has a link that agrees with the entry (up, same MAC, same
// addresses); if not, why not.
func (s *Scenario) CheckAttached(ctx context.Context, pod *corev1.Pod, nad, iface string) (Attached, string) {
	statuses, err := SecondaryStatus(pod)
	if err != nil {
		return Attached{}, err.Error()
	}
	st, ok := statuses[iface]
	if !ok {
		return Attached{}, fmt.Sprintf("network-status has no %s: %s", iface, pod.Annotations[nadv1.NetworkStatusAnnot])
	}
	if want := s.Ns + "/" + nad; st.Name != want {
		return Attached{}, fmt.Sprintf("network-status lists %s as network %s, want %s", iface, st.Name, want)
	}
	links, err := s.PodLinks(ctx, pod)
	if err != nil {
		return Attached{}, err.Error()
	}
	link, ok := links[iface]
	if !ok {
		return Attached{}, fmt.Sprintf("no link %s in the pod's netns (links: %s)", iface, LinkNames(links))
	}
	if why := link.DisagreesWith(st); why != "" {
		return Attached{}, why
	}
	return Attached{Status: st, Link: link}, ""
}

// WaitAttached waits until iface of the pod is attached to nad (see checkAttached).
func (s *Scenario) WaitAttached(podName, nad, iface string) Attached {
	s.T.Helper()
	return s.WaitAttachedWhere(podName, nad, iface, nil)
}

// WaitAttachedWhere is waitAttached that also waits until accept, when not nil, returns "" for
// the attachment (else it says what is still wrong).
func (s *Scenario) WaitAttachedWhere(podName, nad, iface string, accept func(Attached) string) Attached {
	s.T.Helper()
	var got Attached
	start := time.Now()
	WaitUntil(s.T, PlugTimeout, fmt.Sprintf("%s of pod %s attached to %s", iface, podName, nad), func(ctx context.Context) (bool, string) {
		pod, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, podName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		a, why := s.CheckAttached(ctx, pod, nad, iface)
		if why == "" && accept != nil {
			why = accept(a)
		}
		got = a
		return why == "", why
	})
	s.T.Logf("pod %s: %s attached to %s with %v, MAC %s (waited %s)", podName, iface, nad, got.Status.IPs, got.Status.Mac,
		time.Since(start).Round(time.Millisecond))
	return got
}

// WaitDetached waits until iface is neither in the pod's network-status nor in its netns.
func (s *Scenario) WaitDetached(podName, iface string) {
	s.T.Helper()
	start := time.Now()
	WaitUntil(s.T, PlugTimeout, fmt.Sprintf("%s of pod %s gone", iface, podName), func(ctx context.Context) (bool, string) {
		pod, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, podName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		statuses, err := SecondaryStatus(pod)
		if err != nil {
			return false, err.Error()
		}
		if _, ok := statuses[iface]; ok {
			return false, "network-status still lists " + iface
		}
		links, err := s.PodLinks(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		if _, ok := links[iface]; ok {
			return false, "link " + iface + " still in the pod's netns"
		}
		return true, ""
	})
	s.T.Logf("pod %s: %s gone (waited %s)", podName, iface, time.Since(start).Round(time.Millisecond))
}

// Links reads the pod's links now.
func (s *Scenario) Links(podName string) map[string]Link {
	s.T.Helper()
	pod := s.MustGetPod(podName)
	ctx, cancel := s.Ctx()
	defer cancel()
	links, err := s.PodLinks(ctx, pod)
	if err != nil {
		s.T.Fatalf("reading links of pod %s: %v", podName, err)
	}
	return links
}

// ExpectLinkNames fails unless the pod's netns holds exactly lo, eth0 and extra.
func (s *Scenario) ExpectLinkNames(podName string, extra ...string) map[string]Link {
	s.T.Helper()
	links := s.Links(podName)
	want := append([]string{"eth0", "lo"}, extra...)
	sort.Strings(want)
	if got := LinkNames(links); !slices.Equal(got, want) {
		s.T.Fatalf("pod %s has links %v, want exactly %v", podName, got, want)
	}
	return links
}

// ExpectUnchanged fails unless every link of before is in after with the same index, MAC and
// addresses: nothing deleted and re-created it.
func (s *Scenario) ExpectUnchanged(podName string, before, after map[string]Link, names ...string) {
	s.T.Helper()
	for _, name := range names {
		b, a := before[name], after[name]
		if a.Name == "" {
			s.T.Errorf("pod %s: link %s is gone", podName, name)
			continue
		}
		if !b.Same(a) {
			s.T.Errorf("pod %s: link %s changed: before %+v, after %+v", podName, name, b, a)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Events.

// NetplugEvents lists the events netplug recorded on the pod.
func (s *Scenario) NetplugEvents(ctx context.Context, pod *corev1.Pod) ([]corev1.Event, error) {
	list, err := s.Kube.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.uid": string(pod.UID), "source": netplugComponent}.String(),
	})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// WaitEvent waits for a netplug event on the pod of type and reason whose message contains
// contains, and returns it.
func (s *Scenario) WaitEvent(pod *corev1.Pod, eventType, reason, contains string) corev1.Event {
	s.T.Helper()
	var found corev1.Event
	what := fmt.Sprintf("%s event %s (%q) on pod %s", eventType, reason, contains, pod.Name)
	WaitUntil(s.T, PlugTimeout, what, func(ctx context.Context) (bool, string) {
		events, err := s.NetplugEvents(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range events {
			if e.Type == eventType && e.Reason == reason && strings.Contains(e.Message, contains) {
				found = e
				return true, ""
			}
			seen = append(seen, e.Type+"/"+e.Reason+": "+e.Message)
		}
		return false, fmt.Sprintf("events so far: %q", seen)
	})
	s.T.Logf("pod %s: event %s %s: %s", pod.Name, found.Type, found.Reason, found.Message)
	return found
}

// CountEvents counts netplug events on the pod with the reason.
func (s *Scenario) CountEvents(pod *corev1.Pod, reason string) int {
	s.T.Helper()
	ctx, cancel := s.Ctx()
	defer cancel()
	events, err := s.NetplugEvents(ctx, pod)
	if err != nil {
		s.T.Fatalf("listing events of pod %s: %v", pod.Name, err)
	}
	n := 0
	for _, e := range events {
		if e.Reason == reason {
			n += int(max(e.Count, 1))
		}
	}
	return n
}

// ---------------------------------------------------------------------------------------------
// The netplug DaemonSet.

// NetplugPod returns the netplug pod bound to the node.
func (f *Framework) NetplugPod(ctx context.Context) (*corev1.Pod, error) {
	list, err := f.Kube.CoreV1().Pods(NetplugNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: NetplugSelector,
		FieldSelector: "spec.nodeName=" + f.Env.NodeName,
	})
	if err != nil {
		return nil, fmt.Errorf("listing netplug pods: %w", err)
	}
	var live []*corev1.Pod
	for i := range list.Items {
		if list.Items[i].DeletionTimestamp == nil {
			live = append(live, &list.Items[i])
		}
	}
	if len(live) != 1 {
		return nil, fmt.Errorf("%d live netplug pods on node %s, want 1", len(live), f.Env.NodeName)
	}
	return live[0], nil
}

// WaitNetplugReady waits until the node's netplug pod is Ready, is not the pod oldUID (when
// set), and its container restarted more than minRestarts times (when >= 0).
func (f *Framework) WaitNetplugReady(ctx context.Context, oldUID types.UID, minRestarts int32) (*corev1.Pod, error) {
	var ready *corev1.Pod
	why, err := Poll(ctx, PollInterval, 0, func(ctx context.Context) (bool, string) {
		pod, err := f.NetplugPod(ctx)
		switch {
		case err != nil:
			return false, err.Error()
		case oldUID != "" && pod.UID == oldUID:
			return false, "the old netplug pod is still the live one"
		case minRestarts >= 0 && Restarts(pod) <= minRestarts:
			return false, fmt.Sprintf("netplug restarted %d times, waiting for more than %d", Restarts(pod), minRestarts)
		case !PodReady(pod):
			return false, "netplug pod " + pod.Name + " not Ready"
		}
		ready = pod
		return true, ""
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", why, err)
	}
	return ready, nil
}

// NetplugConfigMap returns the ConfigMap that the netplug DaemonSet's "config" volume mounts.
// Its name carries a hash of its content (kustomize's configMapGenerator), so it is found
// through the DaemonSet, never by a fixed name. nil, nil: the DaemonSet mounts none, or the one
// it names does not exist (netplug then runs on its defaults).
func NetplugConfigMap(ctx context.Context, kube kubernetes.Interface) (*corev1.ConfigMap, error) {
	ds, err := kube.AppsV1().DaemonSets(NetplugNamespace).Get(ctx, NetplugDaemonSet, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading DaemonSet %s/%s: %w", NetplugNamespace, NetplugDaemonSet, err)
	}
	name := ""
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Name == netplugConfigVolume && v.ConfigMap != nil {
			name = v.ConfigMap.Name
		}
	}
	if name == "" {
		return nil, nil
	}
	cm, err := kube.CoreV1().ConfigMaps(NetplugNamespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", NetplugNamespace, name, err)
	}
	return cm, nil
}

// RestartNetplug deletes the node's netplug pod and waits until the DaemonSet's new one is Ready.
func (f *Framework) RestartNetplug(ctx context.Context) error {
	old, err := f.NetplugPod(ctx)
	if err != nil {
		return err
	}
	if err := f.Kube.CoreV1().Pods(NetplugNamespace).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("deleting netplug pod %s: %w", old.Name, err)
	}
	if _, err := f.WaitNetplugReady(ctx, old.UID, -1); err != nil {
		return fmt.Errorf("waiting for the netplug pod that replaces %s: %w", old.Name, err)
	}
	return nil
}

// PausedLabel is the node label netplug's DaemonSet is made to require (no node has it) to take
// netplug off the node.
const PausedLabel = "netplug.io/e2e-paused"

// PauseNetplug takes netplug off the node and waits until no netplug pod is left: what the node
// does meanwhile (pods created, edited, deleted) happens with nobody watching for netplug.
// ResumeNetplug brings it back.
func (f *Framework) PauseNetplug(ctx context.Context) error {
	if err := f.setNetplugNodeSelector(ctx, fmt.Sprintf(`{%q:"true"}`, PausedLabel)); err != nil {
		return err
	}
	why, err := Poll(ctx, PollInterval, 2*time.Minute, func(ctx context.Context) (bool, string) {
		list, err := f.Kube.CoreV1().Pods(NetplugNamespace).List(ctx, metav1.ListOptions{LabelSelector: NetplugSelector})
		if err != nil {
			return false, err.Error()
		}
		return len(list.Items) == 0, fmt.Sprintf("%d netplug pods left", len(list.Items))
	})
	if err != nil {
		return fmt.Errorf("netplug did not go away: %s: %w", why, err)
	}
	return nil
}

// ResumeNetplug undoes PauseNetplug and waits until netplug's new pod is Ready.
func (f *Framework) ResumeNetplug(ctx context.Context) error {
	if err := f.setNetplugNodeSelector(ctx, "null"); err != nil {
		return err
	}
	_, err := f.WaitNetplugReady(ctx, "", -1)
	return err
}

// NetplugPaused says whether PauseNetplug's node selector is on the DaemonSet (a run that ended
// while netplug was away).
func (f *Framework) NetplugPaused(ctx context.Context) (bool, error) {
	ds, err := f.Kube.AppsV1().DaemonSets(NetplugNamespace).Get(ctx, NetplugDaemonSet, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	return ds.Spec.Template.Spec.NodeSelector[PausedLabel] != "", nil
}

func (f *Framework) setNetplugNodeSelector(ctx context.Context, selector string) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"nodeSelector":%s}}}}`, selector)
	if _, err := f.Kube.AppsV1().DaemonSets(NetplugNamespace).Patch(ctx, NetplugDaemonSet, types.StrategicMergePatchType,
		[]byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patching the netplug DaemonSet's node selector: %w", err)
	}
	return nil
}

func PodReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func Restarts(pod *corev1.Pod) int32 {
	for _, c := range pod.Status.ContainerStatuses {
		if c.Name == NetplugContainer {
			return c.RestartCount
		}
	}
	return 0
}

// ---------------------------------------------------------------------------------------------
// Diagnostics.

// DumpIfFailed logs diagnostics once if the test has failed; a scenario that repairs what it
// disrupted calls it before the repair, while the evidence is still there.
func (s *Scenario) DumpIfFailed() {
	if s.T.Failed() {
		s.dumped.Do(s.dumpDiagnostics)
	}
}

// dumpDiagnostics logs what explains a failure: the scenario's pods (annotations, links) and
// events, netplug's logs, and the tail of the Multus daemon's log.
func (s *Scenario) dumpDiagnostics() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t := s.T
	t.Logf("===== diagnostics for %s (namespace %s)", t.Name(), s.Ns)
	if pods, err := s.Kube.CoreV1().Pods(s.Ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Logf("listing pods: %v", err)
	} else {
		for i := range pods.Items {
			p := &pods.Items[i]
			t.Logf("--- pod %s (uid %s) phase %s\n  networks: %s\n  network-status: %s", p.Name, p.UID, p.Status.Phase,
				p.Annotations[nadv1.NetworkAttachmentAnnot], p.Annotations[nadv1.NetworkStatusAnnot])
			if p.Spec.NodeName == s.Env.NodeName && p.Status.Phase == corev1.PodRunning {
				links, err := s.PodLinks(ctx, p)
				if err != nil {
					t.Logf("  links: %v", err)
				}
				for _, n := range LinkNames(links) {
					t.Logf("  link %+v", links[n])
				}
			}
		}
	}
	if events, err := s.Kube.CoreV1().Events(s.Ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Logf("listing events: %v", err)
	} else {
		sort.Slice(events.Items, func(i, j int) bool {
			return events.Items[i].LastTimestamp.Before(&events.Items[j].LastTimestamp)
		})
		t.Logf("--- events in %s", s.Ns)
		for _, e := range events.Items {
			t.Logf("  %s %s %s/%s %s x%d: %s", e.LastTimestamp.Format("15:04:05"), e.Type, e.InvolvedObject.Name,
				e.Source.Component, e.Reason, e.Count, e.Message)
		}
	}
	t.Logf("--- netplug logs\n%s", s.NetplugLogs(ctx, 200))
	t.Logf("--- multus-daemon log (tail)\n%s", tailFile(filepath.Join(s.Env.LogDir, "multus-daemon.log"), 80))
}

// NetplugLogs returns the last lines of every netplug pod's current (and previous) container,
// through the API, or from the kubelet's log files when the API cannot serve them.
func (f *Framework) NetplugLogs(ctx context.Context, lines int64) string {
	var b strings.Builder
	list, err := f.Kube.CoreV1().Pods(NetplugNamespace).List(ctx, metav1.ListOptions{LabelSelector: NetplugSelector})
	if err != nil {
		return "listing netplug pods: " + err.Error()
	}
	for _, p := range list.Items {
		for _, previous := range []bool{true, false} {
			if previous && Restarts(&p) == 0 {
				continue
			}
			fmt.Fprintf(&b, "--- %s (node %s, restarts %d, previous=%t)\n", p.Name, p.Spec.NodeName, Restarts(&p), previous)
			raw, err := f.Kube.CoreV1().Pods(NetplugNamespace).GetLogs(p.Name, &corev1.PodLogOptions{
				Container: NetplugContainer, TailLines: &lines, Previous: previous}).DoRaw(ctx)
			if err == nil {
				b.Write(raw)
				continue
			}
			fmt.Fprintf(&b, "(API: %v; kubelet log files follow)\n", err)
			files, _ := filepath.Glob(filepath.Join(f.Env.ClusterDir, "kubelet", "pod-logs",
				NetplugNamespace+"_"+p.Name+"_"+string(p.UID), NetplugContainer, "*.log"))
			for _, file := range files {
				b.WriteString(tailFile(file, int(lines)))
			}
		}
	}
	return b.String()
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ModuleRoot is the nearest directory at or above the working directory holding go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod at or above %s", dir)
		}
	}
}
