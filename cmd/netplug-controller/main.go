// Command netplug-controller is the node agent: flags, config and wiring, no logic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/config"
	"github.com/netplug/netplug/pkg/controller"
	"github.com/netplug/netplug/pkg/cri"
	"github.com/netplug/netplug/pkg/devices"
	"github.com/netplug/netplug/pkg/dra"
	"github.com/netplug/netplug/pkg/executor"
	"github.com/netplug/netplug/pkg/health"
	"github.com/netplug/netplug/pkg/metrics"
	"github.com/netplug/netplug/pkg/multus"
	"github.com/netplug/netplug/pkg/podwriter"
	"github.com/netplug/netplug/pkg/sweep"
)

type flags struct {
	configPath, kubeconfig, nodeName       string
	metricsAddr, healthAddr, checkpointDir string
	leaseNamespace                         string
	sweepInterval                          time.Duration
	devicePluginDir, podResourcesSocket    string
	// DRA: the prepared-claim store and the kubelet's and runtime's plugin paths.
	draClaimDir, kubeletPluginDir, kubeletRegistrarDir, nriSocket string
}

func main() {
	var f flags
	klog.InitFlags(flag.CommandLine)
	flag.StringVar(&f.configPath, "config", "", "path of the JSON config file (the netplug-config ConfigMap); empty: defaults")
	flag.StringVar(&f.kubeconfig, "kubeconfig", "", "path of a kubeconfig; empty: in-cluster config")
	flag.StringVar(&f.nodeName, "node-name", os.Getenv("NODE_NAME"), "the node whose pods this instance manages (default: $NODE_NAME)")
	flag.StringVar(&f.metricsAddr, "metrics-bind-address", ":9090", "address of the Prometheus /metrics endpoint; \"0\" disables it")
	flag.StringVar(&f.healthAddr, "health-probe-bind-address", ":9091", "address of /healthz and /readyz")
	flag.StringVar(&f.checkpointDir, "checkpoint-dir", "/var/lib/netplug/checkpoints", "node-local directory where netplug records what it plugged")
	flag.StringVar(&f.leaseNamespace, "lease-namespace", envOr("POD_NAMESPACE", "netplug-system"), "namespace of the Lease that elects the instance sweeping pods of deleted nodes")
	flag.DurationVar(&f.sweepInterval, "sweep-interval", 2*time.Minute, "how often the elected instance looks for pods of deleted nodes")
	flag.StringVar(&f.devicePluginDir, "device-plugin-dir", "/var/lib/kubelet/device-plugins", "the kubelet's device-plugin directory (with kubelet.sock); used when devicePools is configured")
	flag.StringVar(&f.podResourcesSocket, "pod-resources-socket", "/var/lib/kubelet/pod-resources/kubelet.sock", "the kubelet's PodResources socket; used when devicePools is configured")
	flag.StringVar(&f.draClaimDir, "dra-claim-dir", "/var/lib/netplug/claims", "node-local directory where the DRA driver records prepared claims (with the ConfigMap's dra.enabled)")
	flag.StringVar(&f.kubeletPluginDir, "kubelet-plugin-dir", "/var/lib/kubelet/plugins", "the kubelet's plugin directory (DRA driver socket under netplug.io/)")
	flag.StringVar(&f.kubeletRegistrarDir, "kubelet-registrar-dir", "/var/lib/kubelet/plugins_registry", "the kubelet's plugin registration directory")
	flag.StringVar(&f.nriSocket, "nri-socket", "/var/run/nri/nri.sock", "the container runtime's NRI socket")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	logger := klog.FromContext(ctx).WithName("netplug")
	err := run(klog.NewContext(ctx, logger), f)
	stop()
	if err != nil {
		logger.Error(err, "netplug-controller stopped")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(ctx context.Context, f flags) error {
	logger := klog.FromContext(ctx)
	if f.nodeName == "" {
		return errors.New("--node-name (or $NODE_NAME) is required")
	}
	checks, live := map[string]health.Check{}, map[string]health.Check{}

	cfg, err := config.Load(f.configPath)
	if err != nil {
		logger.Error(err, "Invalid configuration; the controller does not start", "config", f.configPath)
		return idle(ctx, f, "config", err)
	}
	took, err := cfg.LoadMultus()
	if err != nil {
		// Unreadable is not absent: guessing could be more permissive than Multus.
		logger.Error(err, "Invalid Multus daemon config; the controller does not start", "path", cfg.MultusDaemonConfigPath)
		return idle(ctx, f, "multus-config", err)
	}
	if len(took) > 0 {
		logger.Info("Namespace isolation follows the Multus daemon config", "keys", took, "path", cfg.MultusDaemonConfigPath)
	}
	logger.Info("Configuration", "config", f.configPath, "criSocketPath", cfg.CRISocketPath, "multusSocketPath", cfg.MultusSocketPath,
		"workers", cfg.Workers, "releaseWorkers", cfg.ReleaseWorkers, "namespaceIsolation", cfg.NamespaceIsolation,
		"globalNamespaces", cfg.GlobalNamespaces, "maxNetworksPerPod", cfg.MaxNetworksPerPod, "finalizerTimeout", cfg.FinalizerTimeout,
		"apiQPS", cfg.APIQPS, "apiBurst", cfg.APIBurst)

	restConfig, err := restConfigFor(f.kubeconfig, cfg)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(protobuf(restConfig))
	if err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}
	nads, err := nadclient.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("creating NetworkAttachmentDefinition client: %w", err)
	}
	runtime, err := cri.New(cfg.CRISocketPath, cfg.CRITimeout)
	if err != nil {
		return err
	}
	defer runtime.Close() //nolint:errcheck // closing on exit
	delegate := multus.New(cfg.MultusSocketPath, cfg.MultusTimeout)
	// Waits while another instance on this node (a rolling update with surge) holds the lock.
	store, err := checkpoint.Open(ctx, f.checkpointDir)
	if err != nil {
		return err
	}
	defer store.Close() //nolint:errcheck // releasing the lock on exit

	// Events go out asynchronously through the broadcaster's queue: they never hold up a plug.
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(4)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "netplug", Host: f.nodeName})

	pools, err := startPools(ctx, cfg, f.devicePluginDir, f.podResourcesSocket)
	if err != nil {
		// Hot-plug does not depend on the pools: it goes on, and the pools say why they are off.
		logger.Error(err, "Device pools could not start; hot-plug runs without them", "pools", len(cfg.DevicePools))
		pools = nil
	}
	var devs controller.Devices
	exec := executor.New(delegate, store)
	if pools != nil {
		devs = pools
		exec = exec.WithHostLinks(devices.Netlink{})
	}
	writer := podwriter.NewWriter(kube, 30*time.Second)
	metrics.RegisterWorkqueueProvider() // before the controller creates its queue
	ctrl, err := controller.New(controller.Options{
		NodeName:           f.nodeName,
		Workers:            cfg.Workers,
		ResyncPeriod:       cfg.ResyncPeriod,
		NamespaceIsolation: cfg.NamespaceIsolation,
		IsGlobalNamespace:  cfg.IsGlobalNamespace,
		MaxNetworksPerPod:  cfg.MaxNetworksPerPod,
		ReconcileBudget:    cfg.ReconcileBudget,
		ReleaseWorkers:     cfg.ReleaseWorkers,
		FinalizerTimeout:   cfg.FinalizerTimeout,
		// Beside the checkpoints, on the same node-local volume.
		CreationDir: filepath.Join(filepath.Dir(f.checkpointDir), "created"),
		Devices:     devs,
	}, kube, nads, runtime, exec, writer, store, recorder)
	if err != nil {
		return err
	}
	if pools != nil {
		pools.SetOnFree(ctrl.PoolFreed) // a hot-plug waiting for a device retries when one frees up
	}
	checks["informers"] = ctrl.Synced
	checks["cri"] = runtime.Check
	checks["multus"] = delegate.Check
	// A daemon that recreates its socket directory leaves this container's mount of it stale:
	// only a restart re-binds it.
	live["cri-socket-mount"] = mountCheck(cfg.CRISocketPath)
	live["multus-socket-mount"] = mountCheck(cfg.MultusSocketPath)
	if cfg.DRA.Enabled {
		claims, err := dra.OpenClaimStore(f.draClaimDir)
		if err != nil {
			return err
		}
		defer claims.Close() //nolint:errcheck // releasing the lock on exit
		hook := &dra.Hook{Claims: claims, Records: store, Exec: executor.New(delegate, store),
			NADs:   dra.NADClient{Client: nads, NamespaceIsolation: cfg.NamespaceIsolation, GlobalNamespaces: cfg.GlobalNamespaces, Timeout: 30 * time.Second},
			Status: dra.NewStatusWriter(kube.ResourceV1(), 30*time.Second),
			Pods:   dra.PodWriter{Kube: kube, Writer: writer, Timeout: 30 * time.Second}}
		draDevices(ctx, hook, pools, exec, recorder)
		draOpts := dra.Options{NodeName: f.nodeName, Kube: kube, Devices: cfg.DRA.CNIDevices,
			PluginDir: f.kubeletPluginDir, RegistrarDir: f.kubeletRegistrarDir, NRISocket: f.nriSocket}
		draDone := make(chan error, 1)
		go func() { draDone <- dra.Run(ctx, draOpts, claims, hook) }()
		checks["dra"] = func(context.Context) error {
			select {
			case err := <-draDone:
				draDone <- err
				if err == nil {
					err = errors.New("stopped")
				}
				return fmt.Errorf("DRA driver: %w", err)
			default:
				return nil
			}
		}
		logger.Info("DRA driver enabled", "driver", dra.DriverName, "cniDevices", cfg.DRA.CNIDevices)
	}
	serve(ctx, f, live, checks)
	go sweeper(kube, writer, recorder).Run(ctx, f.leaseNamespace, "netplug-sweep", identity(f.nodeName), f.sweepInterval)
	return ctrl.Run(ctx)
}

func sweeper(kube kubernetes.Interface, writer *podwriter.Writer, recorder record.EventRecorder) *sweep.Sweeper {
	return &sweep.Sweeper{Kube: kube, Writer: writer, Recorder: recorder}
}

// identity names this instance in the sweep's Lease: the pod, or else the node.
func identity(nodeName string) string {
	if pod := os.Getenv("POD_NAME"); pod != "" {
		return pod
	}
	return nodeName
}

// idle stays up and unready rather than crash-loop: the probe (check name) and the log line say
// what is wrong.
func idle(ctx context.Context, f flags, name string, err error) error {
	serve(ctx, f, map[string]health.Check{}, map[string]health.Check{name: func(context.Context) error { return err }})
	<-ctx.Done()
	return nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func restConfigFor(kubeconfig string, cfg config.Config) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("loading Kubernetes client config: %w", err)
	}
	rc.QPS, rc.Burst = cfg.APIQPS, cfg.APIBurst
	rc.UserAgent = "netplug-controller"
	return rc, nil
}

// protobuf is cheaper than JSON for core types; CRDs (NADs) only speak JSON.
func protobuf(rc *rest.Config) *rest.Config {
	c := rest.CopyConfig(rc)
	c.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	c.ContentType = "application/vnd.kubernetes.protobuf"
	return c
}

// serve starts the health (and metrics) servers; the checks must all be registered by now.
func serve(ctx context.Context, f flags, live, ready map[string]health.Check) {
	servers := []*http.Server{health.NewHealthServer(f.healthAddr, live, ready)}
	if f.metricsAddr != "0" {
		servers = append(servers, metrics.NewMetricsServer(f.metricsAddr))
	}
	logger := klog.FromContext(ctx)
	for _, s := range servers {
		go func() {
			logger.Info("Serving", "address", s.Addr)
			if err := s.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error(err, "HTTP server failed", "address", s.Addr)
			}
		}()
		go func() {
			<-ctx.Done()
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.Shutdown(shutdownCtx)
		}()
	}
}

func mountCheck(socketPath string) health.Check {
	dir := filepath.Dir(strings.TrimPrefix(socketPath, "unix://"))
	return func(context.Context) error { return health.Stale(health.MountInfo, dir) }
}
