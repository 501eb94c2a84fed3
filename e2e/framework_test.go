//go:build e2e

package e2e

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

	netplugNamespace = "netplug-system"
	netplugDaemonSet = "netplug"
	netplugSelector  = "app.kubernetes.io/name=netplug"
	netplugContainer = "netplug"
	netplugComponent = "netplug" // the source component of netplug's events
	// netplugConfigVolume is the DaemonSet's volume of the (hash-named) ConfigMap.
	netplugConfigVolume = "config"

	pollInterval = 200 * time.Millisecond
	// apiTimeout bounds every single API call the suite makes.
	apiTimeout = 15 * time.Second
	// plugTimeout bounds how long a scenario waits for netplug to converge on an edit.
	plugTimeout = 60 * time.Second
)

// clusterEnv is what the suite needs to know about the local cluster.
type clusterEnv struct {
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

// loadEnv reads the KEY=value file cluster-up writes ($NETPLUG_E2E_ENV, else the default path).
// The file describes the cluster the suite must talk to, so its values win; the process
// environment only fills keys the file lacks.
func loadEnv() (clusterEnv, error) {
	path := os.Getenv("NETPLUG_E2E_ENV")
	if path == "" {
		path = defaultEnvFile
	}
	values := map[string]string{}
	file, err := os.Open(path)
	if err != nil {
		return clusterEnv{}, fmt.Errorf("reading the cluster env file (is the cluster up? make cluster-up): %w", err)
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
		return clusterEnv{}, fmt.Errorf("reading %s: %w", path, err)
	}
	get := func(key string) string {
		if v, ok := values[key]; ok && v != "" {
			return v
		}
		return os.Getenv(key)
	}
	env := clusterEnv{
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
			return clusterEnv{}, fmt.Errorf("%s: %s is not set", path, key)
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
	env  clusterEnv
	kube kubernetes.Interface
	nads nadclient.Interface
	cri  *cri.Client
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
	rc.Timeout = apiTimeout
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
	f := &Framework{env: env, kube: kube, nads: nads, cri: criClient}
	if err := os.MkdirAll(env.IPAMDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the IPAM directory: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := f.waitNetplugReady(ctx, "", -1); err != nil {
		return nil, fmt.Errorf("netplug is not running on node %s (deploy it: make image && OVERLAY=local make deploy): %w",
			env.NodeName, err)
	}
	return f, nil
}

// Close releases the CRI connection.
func (f *Framework) Close() { _ = f.cri.Close() }

// ---------------------------------------------------------------------------------------------
// Scenarios: a namespace each, a timer, and diagnostics on failure.

// scenario is one test's view of the framework: its namespace, and helpers that fail the test.
type scenario struct {
	*Framework
	t      *testing.T
	ns     string
	start  time.Time
	dumped sync.Once
	// afterPods run once the scenario's pods are gone (host fixtures a pod may hold).
	afterPods []func()
}

// newScenario creates a namespace for t and registers, in this order of execution at the end:
// diagnostics if t failed, deletion of the namespace's pods and the namespace, the timing line.
func (f *Framework) newScenario(t *testing.T, short string) *scenario {
	s := &scenario{Framework: f, t: t, ns: "e2e-" + short + "-" + rand.String(5), start: time.Now()}
	t.Cleanup(func() {
		d := time.Since(s.start)
		durations.Store(t.Name(), d)
		t.Logf("SCENARIO %s took %s", t.Name(), d.Round(10*time.Millisecond))
	})
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	_, err := f.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: s.ns, Labels: map[string]string{"netplug-e2e": "true"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", s.ns, err)
	}
	t.Cleanup(s.deleteNamespace)
	t.Cleanup(s.dumpIfFailed)
	// The ServiceAccount admission refuses pods until "default" exists; the controller creates
	// it a moment after the namespace, so do not wait for it.
	_, err = f.kube.CoreV1().ServiceAccounts(s.ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating the default service account in %s: %v", s.ns, err)
	}
	t.Logf("namespace %s", s.ns)
	return s
}

// deleteNamespace deletes the scenario's pods and waits until they are gone (so their CNI DELs
// and netplug's cleanup happen while the test still watches), then the namespace. Pods are
// unplugged first (unless the test failed, when what is attached may be the evidence), so that
// one scenario's leftovers never occupy netplug while the next runs; scenario 11 checks what
// happens to the interfaces of a pod deleted with them.
func (s *scenario) deleteNamespace() {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if !s.t.Failed() {
		s.unplugAll(ctx)
	}
	pods := s.kube.CoreV1().Pods(s.ns)
	list, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		s.t.Logf("cleanup: listing pods of %s: %v", s.ns, err)
	}
	if list != nil {
		for _, p := range list.Items {
			grace := int64(1)
			if p.Spec.NodeName != s.env.NodeName {
				grace = 0 // no kubelet will ever confirm the deletion
			}
			if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil && !apierrors.IsNotFound(err) {
				s.t.Logf("cleanup: deleting pod %s/%s: %v", s.ns, p.Name, err)
			}
		}
	}
	for ctx.Err() == nil {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err == nil && len(list.Items) == 0 {
			break
		}
		time.Sleep(pollInterval)
	}
	if ctx.Err() != nil {
		s.t.Logf("cleanup: pods of %s still there after 90s", s.ns)
	}
	for _, f := range s.afterPods {
		f()
	}
	delCtx, delCancel := context.WithTimeout(context.Background(), apiTimeout)
	defer delCancel()
	if err := s.kube.CoreV1().Namespaces().Delete(delCtx, s.ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		s.t.Logf("cleanup: deleting namespace %s: %v", s.ns, err)
	}
}

// unplugAll removes the network selection of the scenario's pods on the node and waits, for at
// most 20 s, until netplug has unplugged everything; it only logs what is left.
func (s *scenario) unplugAll(ctx context.Context) {
	pods := s.kube.CoreV1().Pods(s.ns)
	list, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		s.t.Logf("cleanup: listing pods of %s: %v", s.ns, err)
		return
	}
	patch := []byte(`{"metadata":{"annotations":{"` + nadv1.NetworkAttachmentAnnot + `":null}}}`)
	var plugged []string
	for _, p := range list.Items {
		if p.Spec.NodeName != s.env.NodeName || p.Annotations[nadv1.NetworkAttachmentAnnot] == "" {
			continue
		}
		if _, err := pods.Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			s.t.Logf("cleanup: unplugging pod %s: %v", p.Name, err)
			continue
		}
		plugged = append(plugged, p.Name)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(plugged) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		var left []string
		for _, name := range plugged {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				continue
			}
			if st, err := secondaryStatus(p); err != nil || len(st) > 0 {
				left = append(left, name)
			}
		}
		plugged = left
		if len(plugged) > 0 {
			time.Sleep(pollInterval)
		}
	}
	if len(plugged) > 0 {
		s.t.Logf("cleanup: pods %v still had secondary interfaces after 20s", plugged)
	}
}

// ctx returns a context bounded by apiTimeout for one call.
func (s *scenario) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), apiTimeout)
}

// scenarioSpec is one scenario of a suite. A disruptive one (it restarts or stops a component)
// runs inline; the others call t.Parallel, which holds them until the suite function has
// returned, so they run together afterwards and never overlap a disruption.
type scenarioSpec struct {
	name       string
	disruptive bool
	run        func(*testing.T)
}

func runScenarios(t *testing.T, specs []scenarioSpec) {
	for _, sc := range specs {
		t.Run(sc.name, func(t *testing.T) {
			if !sc.disruptive {
				t.Parallel()
			}
			sc.run(t)
		})
	}
}

// waitUntil polls cond until it reports true; after timeout the test fails with what and the
// last reason cond gave for not being done.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
		done, why := cond(ctx)
		cancel()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(pollInterval)
	}
}

// ---------------------------------------------------------------------------------------------
// NetworkAttachmentDefinitions.

// cniName is the CNI network name of a NAD of the scenario: unique per namespace, so that its
// host-local allocations live in a directory of their own.
func (s *scenario) cniName(nad string) string { return s.ns + "-" + nad }

// createNAD creates a NAD whose spec.config is config (a single-plugin CNI config) with
// cniVersion and name filled in.
func (s *scenario) createNAD(name string, config map[string]any) {
	s.t.Helper()
	config["cniVersion"] = "0.4.0"
	config["name"] = s.cniName(name)
	raw, err := json.Marshal(config)
	if err != nil {
		s.t.Fatalf("encoding the config of NAD %s: %v", name, err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	_, err = s.nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(s.ns).Create(ctx, &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: string(raw)},
	}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatalf("creating NAD %s/%s: %v", s.ns, name, err)
	}
}

// bridgeConfig is a bridge network on the host bridge named bridge (np*, which cluster-down
// deletes) with host-local IPAM in subnet.
func (s *scenario) bridgeConfig(bridge, subnet string) map[string]any {
	if !strings.HasPrefix(bridge, "np") || len(bridge) > 15 {
		s.t.Fatalf("test bridge %q must be named np* and be at most 15 characters", bridge)
	}
	return map[string]any{
		"type":   "bridge",
		"bridge": bridge,
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": s.env.IPAMDir,
			"ranges":  []any{[]any{map[string]any{"subnet": subnet}}},
		},
	}
}

// createBridgeNAD creates a bridge NAD with host-local IPAM (see bridgeConfig).
func (s *scenario) createBridgeNAD(name, bridge, subnet string) {
	s.t.Helper()
	s.createNAD(name, s.bridgeConfig(bridge, subnet))
}

// ipamAllocations lists, sorted, the addresses host-local holds for the scenario's NAD.
func (s *scenario) ipamAllocations(nad string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.env.IPAMDir, s.cniName(nad)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading IPAM state of %s: %w", nad, err)
	}
	var ips []string
	for _, e := range entries {
		if ipOf(e.Name()) != "" { // the rest is "lock" and "last_reserved_ip.N"
			ips = append(ips, e.Name())
		}
	}
	sort.Strings(ips)
	return ips, nil
}

// waitIPAM waits until host-local holds exactly the addresses want for the NAD: hot-plugged
// addresses are allocated while attached and released once unplugged.
func (s *scenario) waitIPAM(nad string, want ...string) {
	s.t.Helper()
	want = slices.Clone(want)
	sort.Strings(want)
	waitUntil(s.t, 30*time.Second, fmt.Sprintf("IPAM allocations of %s to be %v", nad, want), func(context.Context) (bool, string) {
		got, err := s.ipamAllocations(nad)
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want), fmt.Sprintf("allocated: %v", got)
	})
}

// ---------------------------------------------------------------------------------------------
// Pods.

// newPod is a busybox pod on the node that exits at once on SIGTERM.
func (s *scenario) newPod(name string) *corev1.Pod {
	grace := int64(1)
	automount := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.ns, Labels: map[string]string{"app": "netplug-e2e"}},
		Spec: corev1.PodSpec{
			NodeName:                      s.env.NodeName,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  &automount,
			Containers: []corev1.Container{{
				Name:            "main",
				Image:           s.env.BusyboxImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"},
			}},
		},
	}
}

// createPod creates pod (from newPod, possibly changed) without waiting for it.
func (s *scenario) createPod(pod *corev1.Pod) *corev1.Pod {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	created, err := s.kube.CoreV1().Pods(s.ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatalf("creating pod %s/%s: %v", s.ns, pod.Name, err)
	}
	return created
}

// runningPod creates a pod named name and waits until it runs.
func (s *scenario) runningPod(name string) *corev1.Pod {
	s.t.Helper()
	s.createPod(s.newPod(name))
	return s.waitRunning(name)
}

// getPod reads the pod from the API.
func (s *scenario) getPod(name string) (*corev1.Pod, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.kube.CoreV1().Pods(s.ns).Get(ctx, name, metav1.GetOptions{})
}

func (s *scenario) mustGetPod(name string) *corev1.Pod {
	s.t.Helper()
	pod, err := s.getPod(name)
	if err != nil {
		s.t.Fatalf("getting pod %s/%s: %v", s.ns, name, err)
	}
	return pod
}

// waitRunning waits until the pod is Running with all containers ready.
func (s *scenario) waitRunning(name string) *corev1.Pod {
	s.t.Helper()
	var pod *corev1.Pod
	waitUntil(s.t, 90*time.Second, "pod "+name+" to run", func(ctx context.Context) (bool, string) {
		p, err := s.kube.CoreV1().Pods(s.ns).Get(ctx, name, metav1.GetOptions{})
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
func (s *scenario) patchAnnotations(name string, annotations map[string]*string) *corev1.Pod {
	s.t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		s.t.Fatalf("encoding patch: %v", err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	pod, err := s.kube.CoreV1().Pods(s.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		s.t.Fatalf("patching annotations of pod %s/%s: %v", s.ns, name, err)
	}
	return pod
}

// setNetworks sets the pod's network-selection annotation; "" removes it.
func (s *scenario) setNetworks(name, selection string) *corev1.Pod {
	s.t.Helper()
	var v *string
	if selection != "" {
		v = &selection
	}
	return s.patchAnnotations(name, map[string]*string{nadv1.NetworkAttachmentAnnot: v})
}

// touch changes an unrelated annotation: an update event that must not change any interface.
func (s *scenario) touch(name string) {
	s.t.Helper()
	v := time.Now().Format(time.RFC3339Nano)
	s.patchAnnotations(name, map[string]*string{"netplug-e2e/touched": &v})
}

// element is one entry of the JSON form of the network-selection annotation.
type element struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace,omitempty"`
	Interface string   `json:"interface,omitempty"`
	IPs       []string `json:"ips,omitempty"`
	MAC       string   `json:"mac,omitempty"`
}

// selection renders elements as the annotation's JSON list form.
func selection(elements ...element) string {
	raw, err := json.Marshal(elements)
	if err != nil {
		panic(err) // plain structs always encode
	}
	return string(raw)
}

// ---------------------------------------------------------------------------------------------
// network-status and what the kernel shows.

// networkStatus parses the pod's network-status annotation.
func networkStatus(pod *corev1.Pod) ([]nadv1.NetworkStatus, error) {
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

// secondaryStatus returns the non-default network-status entries by interface, and an error
// if an interface appears twice.
func secondaryStatus(pod *corev1.Pod) (map[string]nadv1.NetworkStatus, error) {
	entries, err := networkStatus(pod)
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

// attached is an interface as network-status reports it and as the kernel shows it.
type attached struct {
	Status nadv1.NetworkStatus
	Link   Link
}

// IP is the interface's first address without prefix length.
func (a attached) IP() string {
	if len(a.Status.IPs) == 0 {
		return ""
	}
	return ipOf(a.Status.IPs[0])
}

// checkAttached reports whether network-status lists iface as network nad of the scenario's
// namespace and the pod's netns has a link that agrees with the entry (up, same MAC, same
// addresses); if not, why not.
func (s *scenario) checkAttached(ctx context.Context, pod *corev1.Pod, nad, iface string) (attached, string) {
	statuses, err := secondaryStatus(pod)
	if err != nil {
		return attached{}, err.Error()
	}
	st, ok := statuses[iface]
	if !ok {
		return attached{}, fmt.Sprintf("network-status has no %s: %s", iface, pod.Annotations[nadv1.NetworkStatusAnnot])
	}
	if want := s.ns + "/" + nad; st.Name != want {
		return attached{}, fmt.Sprintf("network-status lists %s as network %s, want %s", iface, st.Name, want)
	}
	links, err := s.podLinks(ctx, pod)
	if err != nil {
		return attached{}, err.Error()
	}
	link, ok := links[iface]
	if !ok {
		return attached{}, fmt.Sprintf("no link %s in the pod's netns (links: %s)", iface, linkNames(links))
	}
	if why := link.disagreesWith(st); why != "" {
		return attached{}, why
	}
	return attached{Status: st, Link: link}, ""
}

// waitAttached waits until iface of the pod is attached to nad (see checkAttached).
func (s *scenario) waitAttached(podName, nad, iface string) attached {
	s.t.Helper()
	return s.waitAttachedWhere(podName, nad, iface, nil)
}

// waitAttachedWhere is waitAttached that also waits until accept, when not nil, returns "" for
// the attachment (else it says what is still wrong).
func (s *scenario) waitAttachedWhere(podName, nad, iface string, accept func(attached) string) attached {
	s.t.Helper()
	var got attached
	start := time.Now()
	waitUntil(s.t, plugTimeout, fmt.Sprintf("%s of pod %s attached to %s", iface, podName, nad), func(ctx context.Context) (bool, string) {
		pod, err := s.kube.CoreV1().Pods(s.ns).Get(ctx, podName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		a, why := s.checkAttached(ctx, pod, nad, iface)
		if why == "" && accept != nil {
			why = accept(a)
		}
		got = a
		return why == "", why
	})
	s.t.Logf("pod %s: %s attached to %s with %v, MAC %s (waited %s)", podName, iface, nad, got.Status.IPs, got.Status.Mac,
		time.Since(start).Round(time.Millisecond))
	return got
}

// waitDetached waits until iface is neither in the pod's network-status nor in its netns.
func (s *scenario) waitDetached(podName, iface string) {
	s.t.Helper()
	start := time.Now()
	waitUntil(s.t, plugTimeout, fmt.Sprintf("%s of pod %s gone", iface, podName), func(ctx context.Context) (bool, string) {
		pod, err := s.kube.CoreV1().Pods(s.ns).Get(ctx, podName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		statuses, err := secondaryStatus(pod)
		if err != nil {
			return false, err.Error()
		}
		if _, ok := statuses[iface]; ok {
			return false, "network-status still lists " + iface
		}
		links, err := s.podLinks(ctx, pod)
		if err != nil {
			return false, err.Error()
		}
		if _, ok := links[iface]; ok {
			return false, "link " + iface + " still in the pod's netns"
		}
		return true, ""
	})
	s.t.Logf("pod %s: %s gone (waited %s)", podName, iface, time.Since(start).Round(time.Millisecond))
}

// links reads the pod's links now.
func (s *scenario) links(podName string) map[string]Link {
	s.t.Helper()
	pod := s.mustGetPod(podName)
	ctx, cancel := s.ctx()
	defer cancel()
	links, err := s.podLinks(ctx, pod)
	if err != nil {
		s.t.Fatalf("reading links of pod %s: %v", podName, err)
	}
	return links
}

// expectLinkNames fails unless the pod's netns holds exactly lo, eth0 and extra.
func (s *scenario) expectLinkNames(podName string, extra ...string) map[string]Link {
	s.t.Helper()
	links := s.links(podName)
	want := append([]string{"eth0", "lo"}, extra...)
	sort.Strings(want)
	if got := linkNames(links); !slices.Equal(got, want) {
		s.t.Fatalf("pod %s has links %v, want exactly %v", podName, got, want)
	}
	return links
}

// expectUnchanged fails unless every link of before is in after with the same index, MAC and
// addresses: nothing deleted and re-created it.
func (s *scenario) expectUnchanged(podName string, before, after map[string]Link, names ...string) {
	s.t.Helper()
	for _, name := range names {
		b, a := before[name], after[name]
		if a.Name == "" {
			s.t.Errorf("pod %s: link %s is gone", podName, name)
			continue
		}
		if !b.same(a) {
			s.t.Errorf("pod %s: link %s changed: before %+v, after %+v", podName, name, b, a)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Events.

// netplugEvents lists the events netplug recorded on the pod.
func (s *scenario) netplugEvents(ctx context.Context, pod *corev1.Pod) ([]corev1.Event, error) {
	list, err := s.kube.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.uid": string(pod.UID), "source": netplugComponent}.String(),
	})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// waitEvent waits for a netplug event on the pod of type and reason whose message contains
// contains, and returns it.
func (s *scenario) waitEvent(pod *corev1.Pod, eventType, reason, contains string) corev1.Event {
	s.t.Helper()
	var found corev1.Event
	what := fmt.Sprintf("%s event %s (%q) on pod %s", eventType, reason, contains, pod.Name)
	waitUntil(s.t, plugTimeout, what, func(ctx context.Context) (bool, string) {
		events, err := s.netplugEvents(ctx, pod)
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
	s.t.Logf("pod %s: event %s %s: %s", pod.Name, found.Type, found.Reason, found.Message)
	return found
}

// countEvents counts netplug events on the pod with the reason.
func (s *scenario) countEvents(pod *corev1.Pod, reason string) int {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	events, err := s.netplugEvents(ctx, pod)
	if err != nil {
		s.t.Fatalf("listing events of pod %s: %v", pod.Name, err)
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

// netplugPod returns the netplug pod bound to the node.
func (f *Framework) netplugPod(ctx context.Context) (*corev1.Pod, error) {
	list, err := f.kube.CoreV1().Pods(netplugNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: netplugSelector,
		FieldSelector: "spec.nodeName=" + f.env.NodeName,
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
		return nil, fmt.Errorf("%d live netplug pods on node %s, want 1", len(live), f.env.NodeName)
	}
	return live[0], nil
}

// waitNetplugReady waits until the node's netplug pod is Ready, is not the pod oldUID (when
// set), and its container restarted more than minRestarts times (when >= 0).
func (f *Framework) waitNetplugReady(ctx context.Context, oldUID types.UID, minRestarts int32) (*corev1.Pod, error) {
	var why string
	for {
		pod, err := f.netplugPod(ctx)
		switch {
		case err != nil:
			why = err.Error()
		case oldUID != "" && pod.UID == oldUID:
			why = "the old netplug pod is still the live one"
		case minRestarts >= 0 && restarts(pod) <= minRestarts:
			why = fmt.Sprintf("netplug restarted %d times, waiting for more than %d", restarts(pod), minRestarts)
		case !podReady(pod):
			why = "netplug pod " + pod.Name + " not Ready"
		default:
			return pod, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w", why, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// netplugConfigMap returns the ConfigMap that the netplug DaemonSet's "config" volume mounts.
// Its name carries a hash of its content (kustomize's configMapGenerator), so it is found
// through the DaemonSet, never by a fixed name. nil, nil: the DaemonSet mounts none, or the one
// it names does not exist (netplug then runs on its defaults).
func netplugConfigMap(ctx context.Context, kube kubernetes.Interface) (*corev1.ConfigMap, error) {
	ds, err := kube.AppsV1().DaemonSets(netplugNamespace).Get(ctx, netplugDaemonSet, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading DaemonSet %s/%s: %w", netplugNamespace, netplugDaemonSet, err)
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
	cm, err := kube.CoreV1().ConfigMaps(netplugNamespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", netplugNamespace, name, err)
	}
	return cm, nil
}

// restartNetplug deletes the node's netplug pod and waits until the DaemonSet's new one is Ready.
func (f *Framework) restartNetplug(ctx context.Context) error {
	old, err := f.netplugPod(ctx)
	if err != nil {
		return err
	}
	if err := f.kube.CoreV1().Pods(netplugNamespace).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("deleting netplug pod %s: %w", old.Name, err)
	}
	if _, err := f.waitNetplugReady(ctx, old.UID, -1); err != nil {
		return fmt.Errorf("waiting for the netplug pod that replaces %s: %w", old.Name, err)
	}
	return nil
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func restarts(pod *corev1.Pod) int32 {
	for _, c := range pod.Status.ContainerStatuses {
		if c.Name == netplugContainer {
			return c.RestartCount
		}
	}
	return 0
}

// ---------------------------------------------------------------------------------------------
// Diagnostics.

// dumpIfFailed logs diagnostics once if the test has failed; a scenario that repairs what it
// disrupted calls it before the repair, while the evidence is still there.
func (s *scenario) dumpIfFailed() {
	if s.t.Failed() {
		s.dumped.Do(s.dumpDiagnostics)
	}
}

// dumpDiagnostics logs what explains a failure: the scenario's pods (annotations, links) and
// events, netplug's logs, and the tail of the Multus daemon's log.
func (s *scenario) dumpDiagnostics() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t := s.t
	t.Logf("===== diagnostics for %s (namespace %s)", t.Name(), s.ns)
	if pods, err := s.kube.CoreV1().Pods(s.ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Logf("listing pods: %v", err)
	} else {
		for i := range pods.Items {
			p := &pods.Items[i]
			t.Logf("--- pod %s (uid %s) phase %s\n  networks: %s\n  network-status: %s", p.Name, p.UID, p.Status.Phase,
				p.Annotations[nadv1.NetworkAttachmentAnnot], p.Annotations[nadv1.NetworkStatusAnnot])
			if p.Spec.NodeName == s.env.NodeName && p.Status.Phase == corev1.PodRunning {
				links, err := s.podLinks(ctx, p)
				if err != nil {
					t.Logf("  links: %v", err)
				}
				for _, n := range linkNames(links) {
					t.Logf("  link %+v", links[n])
				}
			}
		}
	}
	if events, err := s.kube.CoreV1().Events(s.ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Logf("listing events: %v", err)
	} else {
		sort.Slice(events.Items, func(i, j int) bool {
			return events.Items[i].LastTimestamp.Before(&events.Items[j].LastTimestamp)
		})
		t.Logf("--- events in %s", s.ns)
		for _, e := range events.Items {
			t.Logf("  %s %s %s/%s %s x%d: %s", e.LastTimestamp.Format("15:04:05"), e.Type, e.InvolvedObject.Name,
				e.Source.Component, e.Reason, e.Count, e.Message)
		}
	}
	t.Logf("--- netplug logs\n%s", s.netplugLogs(ctx, 200))
	t.Logf("--- multus-daemon log (tail)\n%s", tailFile(filepath.Join(s.env.LogDir, "multus-daemon.log"), 80))
}

// netplugLogs returns the last lines of every netplug pod's current (and previous) container,
// through the API, or from the kubelet's log files when the API cannot serve them.
func (f *Framework) netplugLogs(ctx context.Context, lines int64) string {
	var b strings.Builder
	list, err := f.kube.CoreV1().Pods(netplugNamespace).List(ctx, metav1.ListOptions{LabelSelector: netplugSelector})
	if err != nil {
		return "listing netplug pods: " + err.Error()
	}
	for _, p := range list.Items {
		for _, previous := range []bool{true, false} {
			if previous && restarts(&p) == 0 {
				continue
			}
			fmt.Fprintf(&b, "--- %s (node %s, restarts %d, previous=%t)\n", p.Name, p.Spec.NodeName, restarts(&p), previous)
			raw, err := f.kube.CoreV1().Pods(netplugNamespace).GetLogs(p.Name, &corev1.PodLogOptions{
				Container: netplugContainer, TailLines: &lines, Previous: previous}).DoRaw(ctx)
			if err == nil {
				b.Write(raw)
				continue
			}
			fmt.Fprintf(&b, "(API: %v; kubelet log files follow)\n", err)
			files, _ := filepath.Glob(filepath.Join(f.env.ClusterDir, "kubelet", "pod-logs",
				netplugNamespace+"_"+p.Name+"_"+string(p.UID), netplugContainer, "*.log"))
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
