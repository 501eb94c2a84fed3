// Package cli is kubectl-netplug: the commands that attach, detach and show a running pod's
// secondary networks by editing the network-selection annotation netplug watches. It refuses
// what netplug would refuse by running every would-be annotation through the controller's own
// parser (pkg/attachment) before anything is written.
package cli

import (
	"fmt"
	"io"
	"time"

	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
)

// Annotations, labels and names netplug uses (see manifests/ and pkg/controller).
const (
	networksAnnotation = "k8s.v1.cni.cncf.io/networks"
	statusAnnotation   = "k8s.v1.cni.cncf.io/network-status"
	netplugComponent   = "netplug" // the source component of netplug's events
	netplugSelector    = "app.kubernetes.io/name=netplug"
	defaultNetplugNS   = "netplug-system"
	defaultWait        = 2 * time.Minute
)

// Clients are the API clients the commands use.
type Clients struct {
	Kube kubernetes.Interface
	NADs nadclient.Interface
}

// Factory gives the commands their clients and the namespace to work in; tests give fakes.
type Factory interface {
	Clients() (*Clients, error)
	// Namespace is -n, else the kubeconfig context's namespace, else "default".
	Namespace() (string, error)
}

// configFactory builds clients from the standard kubectl flags.
type configFactory struct {
	flags *genericclioptions.ConfigFlags
}

func (f configFactory) Clients() (*Clients, error) {
	rc, err := f.flags.ToRESTConfig()
	if err != nil {
		return nil, exitErr(ExitError, "loading the kubeconfig: %w", err)
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, exitErr(ExitError, "creating the Kubernetes client: %w", err)
	}
	nads, err := nadclient.NewForConfig(rc)
	if err != nil {
		return nil, exitErr(ExitError, "creating the NetworkAttachmentDefinition client: %w", err)
	}
	return &Clients{Kube: kube, NADs: nads}, nil
}

func (f configFactory) Namespace() (string, error) {
	ns, _, err := f.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", exitErr(ExitError, "finding the namespace: %w", err)
	}
	return ns, nil
}

// Options configure NewCommand.
type Options struct {
	Streams genericiooptions.IOStreams
	// ConfigFlags are the standard kubectl flags; NewCommand adds them to the root command.
	ConfigFlags *genericclioptions.ConfigFlags
	// Factory defaults to one built from ConfigFlags.
	Factory Factory
	// Version is the plugin's version ("" is "dev").
	Version string
}

// common is what every command shares.
type common struct {
	streams   genericiooptions.IOStreams
	factory   Factory
	netplugNS string
	clients   *Clients
	namespace string
}

// setup resolves the clients and the namespace once per run.
func (c *common) setup() error {
	if c.clients != nil {
		return nil
	}
	clients, err := c.factory.Clients()
	if err != nil {
		return err
	}
	ns, err := c.factory.Namespace()
	if err != nil {
		return err
	}
	c.clients, c.namespace = clients, ns
	return nil
}

func (c *common) warnf(format string, args ...any) {
	_, _ = fmt.Fprintf(c.streams.ErrOut, "Warning: "+format+"\n", args...)
}

func (c *common) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(c.streams.Out, format, args...)
}

// NewCommand returns the kubectl-netplug root command.
func NewCommand(o Options) *cobra.Command {
	if o.ConfigFlags == nil {
		o.ConfigFlags = genericclioptions.NewConfigFlags(true)
	}
	if o.Factory == nil {
		o.Factory = configFactory{o.ConfigFlags}
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Streams.Out == nil {
		o.Streams.Out = io.Discard
	}
	if o.Streams.ErrOut == nil {
		o.Streams.ErrOut = io.Discard
	}
	c := &common{streams: o.Streams, factory: o.Factory}
	root := &cobra.Command{
		Use:   "kubectl-netplug",
		Short: "Hot-plug Multus secondary networks into running pods",
		Long: `kubectl netplug attaches and detaches secondary networks of running pods, and shows them.

It edits the pod's k8s.v1.cni.cncf.io/networks annotation, which netplug watches, after checking
the edit with netplug's own parser, and reads the outcome from k8s.v1.cni.cncf.io/network-status
and netplug's events on the pod.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl netplug"},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.Args = func(_ *cobra.Command, a []string) error {
		if len(a) > 0 {
			return usageErr("unknown command %q for \"kubectl netplug\"; see kubectl netplug --help", a[0])
		}
		return nil
	}
	root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	root.SetOut(o.Streams.Out)
	root.SetErr(o.Streams.ErrOut)
	root.SetIn(o.Streams.In)
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &CodedError{Code: ExitUsage, Err: err} })
	o.ConfigFlags.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVar(&c.netplugNS, "netplug-namespace", defaultNetplugNS, "namespace of the netplug DaemonSet")
	_ = root.RegisterFlagCompletionFunc("namespace", c.completeNamespaces)

	root.AddCommand(newAttachCommand(c), newDetachCommand(c), newStatusCommand(c),
		newVersionCommand(c, o.Version), newCompletionCommand(c, root))
	return root
}

// args checks the number of positional arguments, as a usage error.
func args(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) > hi && len(a) > 0 {
			if _, err := time.ParseDuration(a[len(a)-1]); err == nil && cmd.Flags().Changed("wait") {
				return usageErr("give the duration of --wait with '=': --wait=%s", a[len(a)-1])
			}
		}
		if len(a) < lo || len(a) > hi {
			return usageErr("usage: %s (see %s --help)", cmd.UseLine(), cmd.CommandPath())
		}
		return nil
	}
}
