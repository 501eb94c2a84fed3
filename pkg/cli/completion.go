package cli

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netplug/netplug/pkg/attachment"
)

// completionTimeout bounds the API calls of one completion: a shell must not hang.
const completionTimeout = 5 * time.Second

func newCompletionCommand(c *common, root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh",
		Short: "Print a shell completion script",
		Long: `Print a completion script for bash or zsh. It completes commands, flags, pod names,
NetworkAttachmentDefinition names (attach) and a pod's interfaces and networks (detach).

  source <(kubectl-netplug completion bash)
  kubectl-netplug completion zsh > "${fpath[1]}/_kubectl-netplug"

For "kubectl netplug <TAB>" (kubectl 1.26 and later), put an executable kubectl_complete-netplug
on the PATH that runs: kubectl-netplug __complete "$@"`,
		Args:      args(1, 1),
		ValidArgs: []string{"bash", "zsh"},
		RunE: func(_ *cobra.Command, a []string) error {
			switch a[0] {
			case "bash":
				return root.GenBashCompletionV2(c.streams.Out, true)
			case "zsh":
				return root.GenZshCompletion(c.streams.Out)
			default:
				return usageErr("completion for %q is not supported: use bash or zsh", a[0])
			}
		},
	}
}

func completionContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), completionTimeout)
}

// filtered keeps the names with the prefix, sorted.
func filtered(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

const noFiles = cobra.ShellCompDirectiveNoFileComp

func (c *common) podNames(prefix string) []string {
	if c.setup() != nil {
		return nil
	}
	ctx, cancel := completionContext()
	defer cancel()
	list, err := c.clients.Kube.CoreV1().Pods(c.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var names []string
	for _, p := range list.Items {
		names = append(names, p.Name)
	}
	return filtered(names, prefix)
}

func (c *common) completePods(_ *cobra.Command, a []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if len(a) > 0 {
		return nil, noFiles
	}
	return c.podNames(prefix), noFiles
}

// completePodThenNetwork completes attach: a pod, then the NADs of the namespace (and, after
// "NAMESPACE/", those of that namespace).
func (c *common) completePodThenNetwork(_ *cobra.Command, a []string, prefix string) ([]string, cobra.ShellCompDirective) {
	switch len(a) {
	case 0:
		return c.podNames(prefix), noFiles
	case 1:
	default:
		return nil, noFiles
	}
	if c.setup() != nil {
		return nil, noFiles
	}
	ns, qualify := c.namespace, ""
	if before, _, ok := strings.Cut(prefix, "/"); ok {
		ns, qualify = before, before+"/"
	}
	ctx, cancel := completionContext()
	defer cancel()
	list, err := c.clients.NADs.K8sCniCncfIoV1().NetworkAttachmentDefinitions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, noFiles
	}
	var names []string
	for _, n := range list.Items {
		names = append(names, qualify+n.Name)
	}
	return filtered(names, prefix), noFiles
}

// completePodThenElement completes detach: a pod, then its interfaces and networks.
func (c *common) completePodThenElement(_ *cobra.Command, a []string, prefix string) ([]string, cobra.ShellCompDirective) {
	switch len(a) {
	case 0:
		return c.podNames(prefix), noFiles
	case 1:
	default:
		return nil, noFiles
	}
	if c.setup() != nil {
		return nil, noFiles
	}
	ctx, cancel := completionContext()
	defer cancel()
	pod, err := c.clients.Kube.CoreV1().Pods(c.namespace).Get(ctx, a[0], metav1.GetOptions{})
	if err != nil {
		return nil, noFiles
	}
	seen := map[string]bool{}
	var names []string
	add := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	entries, _ := attachment.ParseNetworkStatus(pod.Annotations[statusAnnotation])
	if sel, err := attachment.ParseSelection(pod.Annotations[networksAnnotation], pod.Namespace); err == nil {
		for _, cand := range candidates(sel, attachment.Current(entries, nil)) {
			add(cand.iface)
			network := cand.network
			if n, ok := strings.CutPrefix(network, pod.Namespace+"/"); ok {
				network = n
			}
			add(network)
		}
	}
	return filtered(names, prefix), noFiles
}

func (c *common) completeNamespaces(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	if c.setup() != nil {
		return nil, noFiles
	}
	ctx, cancel := completionContext()
	defer cancel()
	list, err := c.clients.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, noFiles
	}
	var names []string
	for _, n := range list.Items {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	return names, noFiles
}
