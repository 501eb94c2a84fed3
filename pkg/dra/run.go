package dra

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/nri/pkg/stub"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	nadutils "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/utils"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/podwriter"
)

// NADClient resolves NADs through the API, with namespace isolation.
type NADClient struct {
	Client             nadclient.Interface
	NamespaceIsolation bool
	GlobalNamespaces   []string
	Timeout            time.Duration
}

// Config returns the CNI config of the NAD namespace/name for a claim in namespace from.
func (n NADClient) Config(ctx context.Context, from, namespace, name string) ([]byte, error) {
	if n.NamespaceIsolation && namespace != from && !slices.Contains(n.GlobalNamespaces, namespace) {
		return nil, fmt.Errorf("network %s/%s is in another namespace and namespace isolation is on", namespace, name)
	}
	ctx, cancel := context.WithTimeout(ctx, n.Timeout)
	defer cancel()
	nad, err := n.Client.K8sCniCncfIoV1().NetworkAttachmentDefinitions(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("looking up NetworkAttachmentDefinition %s/%s: %w", namespace, name, err)
	}
	if strings.TrimSpace(nad.Spec.Config) == "" {
		return nil, fmt.Errorf("NetworkAttachmentDefinition %s/%s has no spec.config", namespace, name)
	}
	return nadutils.GetCNIConfigFromSpec(nad.Spec.Config, name)
}

// PodWriter applies network-status changes through podwriter (conflict-safe).
type PodWriter struct {
	Kube    kubernetes.Interface
	Writer  *podwriter.Writer
	Timeout time.Duration
}

// ApplyChanges reads the pod and applies changes to its network-status.
func (p PodWriter) ApplyChanges(ctx context.Context, namespace, name string, changes []podwriter.Change) error {
	getCtx, cancel := context.WithTimeout(ctx, p.Timeout)
	pod, err := p.Kube.CoreV1().Pods(namespace).Get(getCtx, name, metav1.GetOptions{})
	cancel()
	if err != nil {
		return err
	}
	_, err = p.Writer.Apply(ctx, pod, podwriter.Update{Changes: changes})
	return err
}

// RecorderEvents reports on pods through an event recorder.
type RecorderEvents struct{ Recorder record.EventRecorder }

// PodWarning records a Warning event on the pod.
func (r RecorderEvents) PodWarning(namespace, name, uid, reason, message string) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID(uid)}}
	r.Recorder.Event(pod, corev1.EventTypeWarning, reason, message)
}

// Options configure Run.
type Options struct {
	NodeName string
	Kube     kubernetes.Interface
	// Devices is how many virtual CNI devices the node's ResourceSlice publishes.
	Devices int
	// PluginDir and RegistrarDir are the kubelet's plugin and registration directories.
	PluginDir, RegistrarDir string
	// NRISocket is the runtime's NRI socket ("" for the default).
	NRISocket string
	// PoolPoll is how often the pool NICs in the slice are checked against the kubelet's
	// allocations (changes of the pools themselves republish at once); 0 is 10 s.
	PoolPoll time.Duration
}

// Run serves the kubelet plugin (prepare/unprepare), publishes the node's ResourceSlice and
// runs the NRI hook until ctx ends. The hook is registered before the kubelet plugin, so a
// prepared claim always finds it. The pool NICs of prepared claims are reserved again first
// (hook.Pools): a restart must not free a device a claim holds.
func Run(ctx context.Context, opts Options, claims *ClaimStore, hook *Hook) error {
	logger := klog.FromContext(ctx).WithName("dra")
	n, err := hook.RestoreReservations()
	if err != nil {
		return fmt.Errorf("restoring the pool NICs of prepared claims: %w", err)
	}
	if n > 0 {
		logger.V(2).Info("Pool NICs of prepared claims reserved", "devices", n)
	}
	nriOpts := []stub.Option{stub.WithPluginName("netplug"), stub.WithPluginIdx("10"),
		stub.WithOnClose(func() { logger.Info("NRI connection closed; restarting to re-register") })}
	if opts.NRISocket != "" {
		nriOpts = append(nriOpts, stub.WithSocketPath(opts.NRISocket))
	}
	nri, err := stub.New(hook, nriOpts...)
	if err != nil {
		return fmt.Errorf("creating the NRI plugin: %w", err)
	}
	if err := nri.Start(ctx); err != nil {
		return fmt.Errorf("starting the NRI plugin (is NRI enabled in the runtime?): %w", err)
	}
	defer nri.Stop()

	// The kubelet creates its plugin directory, not the driver's own directory in it.
	dataDir := filepath.Join(opts.PluginDir, DriverName)
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fmt.Errorf("creating the DRA plugin directory: %w", err)
	}
	helper, err := kubeletplugin.Start(ctx, NewDriver(claims, hook).WithPools(hook.Pools, opts.NodeName),
		kubeletplugin.DriverName(DriverName),
		kubeletplugin.KubeClient(opts.Kube),
		kubeletplugin.NodeName(opts.NodeName),
		kubeletplugin.PluginDataDirectoryPath(dataDir),
		kubeletplugin.RegistrarDirectoryPath(opts.RegistrarDir),
	)
	if err != nil {
		return fmt.Errorf("starting the DRA kubelet plugin: %w", err)
	}
	defer helper.Stop()
	if err := helper.PublishResources(ctx, NodeResources(ctx, opts.NodeName, opts.Devices, hook.Pools)); err != nil {
		return fmt.Errorf("publishing the node's ResourceSlice: %w", err)
	}
	if hasNICPools(hook.Pools) {
		poll := opts.PoolPoll
		if poll <= 0 {
			poll = 10 * time.Second
		}
		go PublishNICs(ctx, helper, opts.NodeName, opts.Devices, hook.Pools, poll)
	}
	logger.Info("DRA driver running", "driver", DriverName, "devices", opts.Devices, "nicPools", hasNICPools(hook.Pools))
	<-ctx.Done()
	return nil
}
