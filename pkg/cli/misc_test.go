package cli

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/controller"
)

// The reasons the CLI looks for are the controller's.
func TestReasonsAreTheControllers(t *testing.T) {
	for mine, theirs := range map[string]string{
		reasonInvalidSelection: controller.ReasonInvalidSelection, reasonInvalidStatus: controller.ReasonInvalidStatus,
		reasonHostNetwork: controller.ReasonHostNetwork, reasonSandboxLookup: controller.ReasonSandboxLookup,
		reasonCheckpointFailed: controller.ReasonCheckpointFailed, reasonStatusWriteFailed: controller.ReasonStatusWriteFailed,
	} {
		if mine != theirs {
			t.Errorf("reason %q, the controller's is %q", mine, theirs)
		}
	}
	if attachment.ReasonInvalidInterface != "InvalidInterfaceName" {
		t.Error("attachment reasons changed: check status_test")
	}
}

func TestVersion(t *testing.T) {
	w := newWorld(t, nil)
	w.run("version").expect(t, ExitOK, "kubectl-netplug v1.2.3 go")
	w.run("version", "extra").expect(t, ExitUsage)
}

func TestCompletionScripts(t *testing.T) {
	w := newWorld(t, nil)
	w.run("completion", "bash").expect(t, ExitOK, "__start_kubectl-netplug")
	w.run("completion", "zsh").expect(t, ExitOK, "#compdef kubectl-netplug")
	w.run("completion", "fish").expect(t, ExitUsage)
	w.run("completion").expect(t, ExitUsage)
}

func TestCompletionNames(t *testing.T) {
	w := newWorld(t, testPod("p", withNetworks("br@data0, br2")), testPod("pq"))
	complete := func(args ...string) []string {
		r := w.run(append([]string{"__complete"}, args...)...)
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(r.out), "\n") {
			if !strings.HasPrefix(l, ":") && l != "" {
				out = append(out, l)
			}
		}
		return out
	}
	check := func(got []string, want ...string) {
		t.Helper()
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("completions %q, want %q", got, want)
		}
	}
	check(complete("attach", "p"), "p", "pq")
	check(complete("attach", "p", ""), "br", "br2")
	check(complete("attach", "p", "other/"), "other/br2")
	check(complete("detach", "p", ""), "br", "br2", "data0", "net1")
	check(complete("status", ""), "p", "pq")
	check(complete("attach", "p", "br", ""))
	if _, err := w.kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	check(complete("status", "-n", ""), "ns")
}

func TestRootUsage(t *testing.T) {
	w := newWorld(t, nil)
	w.run("frobnicate").expect(t, ExitUsage, `unknown command "frobnicate"`)
	w.run().expect(t, ExitOK, "attach", "detach", "status")
	w.run("--nope").expect(t, ExitUsage)
}

func TestExitCode(t *testing.T) {
	if ExitCode(nil) != ExitOK || ExitCode(errorsNew("x")) != ExitError || ExitCode(refused("x")) != ExitRefused {
		t.Error("ExitCode")
	}
}
