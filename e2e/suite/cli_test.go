//go:build e2e

package suite

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"

	"github.com/netplug/netplug/e2e/framework"
)

// The exit codes of kubectl-netplug (pkg/cli), as its users see them.
const (
	cliOK       = 0
	cliNotFound = 4
	cliFailed   = 7
)

// cliWait is the --wait of the scenarios: netplug's own deadline, so a slow plug fails the
// plugin's wait no sooner than the suite's pollers would.
var cliWait = "--wait=" + framework.PlugTimeout.String()

// TestCLI runs the scenarios of the kubectl plugin against the cluster: they check what the
// plugin says and exits with, and, with the suite's own helpers, what really happened.
func TestCLI(t *testing.T) {
	bin := buildPlugin(t)
	for _, sc := range []struct {
		name string
		run  func(*testing.T, string)
	}{
		{"cli-01-AttachWaitStatusDetach", testCLIAttachStatusDetach},
		{"cli-02-CommaFormUnnamedElement", testCLICommaFormUnnamed},
		{"cli-03-FailedAttachShowsReason", testCLIFailedAttach},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, bin)
		})
	}
}

// buildPlugin builds kubectl-netplug from this tree into a temporary directory.
func buildPlugin(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(t.TempDir(), "kubectl-netplug")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := framework.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/kubectl-netplug")
	cmd.Dir = root
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building kubectl-netplug: %v\n%s", err, out)
	}
	return bin
}

// cliRun is one run of the plugin.
type cliRun struct {
	out, err string
	code     int
}

// cli runs the plugin with the cluster's kubeconfig in the scenario's namespace.
func (s *scenario) cli(bin string, args ...string) cliRun {
	s.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), framework.PlugTimeout+30*time.Second)
	defer cancel()
	full := append([]string{"--kubeconfig", s.Env.Kubeconfig, "-n", s.Ns}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := cliRun{out: stdout.String(), err: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		s.T.Fatalf("running kubectl-netplug %s: %v", strings.Join(args, " "), err)
	}
	s.T.Logf("kubectl netplug %s -> exit %d in %s\n%s%s", strings.Join(args, " "), r.code,
		time.Since(start).Round(time.Millisecond), r.out, r.err)
	return r
}

// expectCLI fails the test unless the run exited with code and printed each of want.
func (s *scenario) expectCLI(r cliRun, code int, want ...string) {
	s.T.Helper()
	if r.code != code {
		s.T.Fatalf("kubectl-netplug exited %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.out, r.err)
	}
	for _, w := range want {
		if !strings.Contains(r.out+r.err, w) {
			s.T.Errorf("kubectl-netplug output lacks %q\nstdout: %s\nstderr: %s", w, r.out, r.err)
		}
	}
}

// cliStatus is the plugin's `status -o json` (the schema of pkg/cli.StatusList).
type cliStatus struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Items      []struct {
		Namespace string   `json:"namespace"`
		Pod       string   `json:"pod"`
		Interface string   `json:"interface"`
		Network   string   `json:"network"`
		IPs       []string `json:"ips"`
		MAC       string   `json:"mac"`
		State     string   `json:"state"`
		Reason    string   `json:"reason"`
		Message   string   `json:"message"`
	} `json:"items"`
}

// waitCLIStatus runs `status POD -o json` until the interface's row satisfies accept ("" when it
// does, else why not).
func (s *scenario) waitCLIStatus(bin, pod, iface string, accept func(state, reason, message string, ips []string) string) {
	s.T.Helper()
	framework.WaitUntil(s.T, framework.PlugTimeout, fmt.Sprintf("kubectl netplug status %s to show %s as wanted", pod, iface), func(context.Context) (bool, string) {
		r := s.cli(bin, "status", pod, "-o", "json")
		if r.code != cliOK {
			return false, fmt.Sprintf("exit %d: %s", r.code, r.err)
		}
		var st cliStatus
		if err := json.Unmarshal([]byte(r.out), &st); err != nil {
			return false, err.Error()
		}
		if st.APIVersion != "netplug.io/v1alpha1" || st.Kind != "InterfaceStatusList" {
			return false, fmt.Sprintf("apiVersion %q kind %q", st.APIVersion, st.Kind)
		}
		for _, it := range st.Items {
			if it.Interface == iface && it.Pod == pod && it.Namespace == s.Ns {
				why := accept(it.State, it.Reason, it.Message, it.IPs)
				return why == "", why
			}
		}
		return false, "no row for " + iface + ": " + r.out
	})
}

// cli-01: attach with --wait, status shows it (JSON and table), detach with --wait; the suite's
// own checks confirm the link, the addresses and their release.
func testCLIAttachStatusDetach(t *testing.T, bin string) {
	s := newScenario(t, "cli")
	const subnet = "10.231.0.0/24"
	s.CreateBridgeNAD("br", "np31", subnet)
	s.RunningPod("p")

	s.expectCLI(s.cli(bin, "attach", "p", "br@cl1", cliWait), cliOK, "attaching "+s.Ns+"/br as cl1", s.Ns+"/br attached as cl1")
	if got := s.MustGetPod("p").Annotations[nadv1.NetworkAttachmentAnnot]; got != "br@cl1" {
		t.Errorf("annotation %q, want the comma form br@cl1", got)
	}
	a := s.WaitAttached("p", "br", "cl1")
	if !framework.InSubnet(a.IP(), subnet) {
		t.Errorf("cl1 has %v, want an address in %s", a.Status.IPs, subnet)
	}
	s.waitCLIStatus(bin, "p", "cl1", func(state, _, _ string, ips []string) string {
		if state != "attached" || len(ips) == 0 || framework.IpOf(ips[0]) != a.IP() {
			return fmt.Sprintf("state %s, IPs %v; want attached with %s", state, ips, a.IP())
		}
		return ""
	})
	table := s.cli(bin, "status", "p")
	s.expectCLI(table, cliOK, "INTERFACE", "cl1", s.Ns+"/br", a.IP(), "attached")
	s.expectCLI(s.cli(bin, "attach", "p", "br@cl1"), cliOK, "already requested")

	s.expectCLI(s.cli(bin, "detach", "p", "cl1", cliWait), cliOK, "detaching "+s.Ns+"/br from cl1", s.Ns+"/br detached from cl1")
	s.WaitDetached("p", "cl1")
	if got, ok := s.MustGetPod("p").Annotations[nadv1.NetworkAttachmentAnnot]; ok {
		t.Errorf("annotation %q left, want it removed", got)
	}
	s.ExpectLinkNames("p")
	s.WaitIPAM("br")
	s.expectCLI(s.cli(bin, "status", "p"), cliOK, "No secondary networks found")
}

// cli-02: the plugin adds to a comma-form annotation written by hand, keeps it in that form,
// names the unnamed element as netplug does, and detaches it by network.
func testCLICommaFormUnnamed(t *testing.T, bin string) {
	s := newScenario(t, "clicomma")
	s.CreateBridgeNAD("a", "np32a", "10.232.0.0/24")
	s.CreateBridgeNAD("b", "np32b", "10.232.1.0/24")
	s.RunningPod("p")
	s.SetNetworks("p", "a@hand1")
	s.WaitAttached("p", "a", "hand1")
	before := s.ExpectLinkNames("p", "hand1")

	s.expectCLI(s.cli(bin, "attach", "p", "b", cliWait), cliOK, "as net1 (the name netplug gives it)", s.Ns+"/b attached as net1")
	if got := s.MustGetPod("p").Annotations[nadv1.NetworkAttachmentAnnot]; got != "a@hand1, b" {
		t.Errorf("annotation %q, want %q", got, "a@hand1, b")
	}
	s.WaitAttached("p", "b", "net1")
	s.ExpectUnchanged("p", before, s.ExpectLinkNames("p", "hand1", "net1"), "eth0", "hand1")

	s.expectCLI(s.cli(bin, "detach", "p", "b", cliWait), cliOK, "detaching "+s.Ns+"/b from net1")
	s.WaitDetached("p", "net1")
	if got := s.MustGetPod("p").Annotations[nadv1.NetworkAttachmentAnnot]; got != "a@hand1" {
		t.Errorf("annotation %q, want %q", got, "a@hand1")
	}
	s.ExpectUnchanged("p", before, s.ExpectLinkNames("p", "hand1"), "eth0", "hand1")
}

// cli-03: an unknown NAD is refused before anything is written; an attach whose plugin fails
// exits with the failure and its reason, and status shows the reason until it is detached.
func testCLIFailedAttach(t *testing.T, bin string) {
	s := newScenario(t, "clifail")
	// macvlan on a master link that does not exist: the plugin's ADD fails.
	s.CreateNAD("broken", map[string]any{"type": "macvlan", "master": "np33-missing", "mode": "bridge",
		"ipam": map[string]any{"type": "static", "addresses": []any{map[string]any{"address": "10.233.0.10/24"}}}})
	s.RunningPod("p")

	s.expectCLI(s.cli(bin, "attach", "p", "nope@cl3"), cliNotFound, "NetworkAttachmentDefinition "+s.Ns+"/nope not found")
	if got := s.MustGetPod("p").Annotations[nadv1.NetworkAttachmentAnnot]; got != "" {
		t.Fatalf("a refused attach wrote the annotation %q", got)
	}

	s.expectCLI(s.cli(bin, "attach", "p", "broken@cl3", cliWait), cliFailed, "netplug failed to attach "+s.Ns+"/broken as cl3", "PlugFailed")
	s.WaitEvent(s.MustGetPod("p"), warning, "PlugFailed", s.Ns+"/broken as cl3")
	// The retry of a failed ADD is a replug (its outcome is unknown: DEL, then ADD), and with the
	// master missing that DEL fails too: the last Warning is PlugFailed or UnplugFailed.
	s.waitCLIStatus(bin, "p", "cl3", func(state, reason, message string, _ []string) string {
		if state != "failed" || (reason != "PlugFailed" && reason != "UnplugFailed") || !strings.Contains(message, s.Ns+"/broken") {
			return fmt.Sprintf("state %s, reason %s, message %q; want failed, PlugFailed or UnplugFailed", state, reason, message)
		}
		return ""
	})
	s.expectCLI(s.cli(bin, "status", "p"), cliOK, "cl3", "failed")
	s.ExpectLinkNames("p")

	s.expectCLI(s.cli(bin, "detach", "p", "cl3", cliWait), cliOK, "detached from cl3")
	if got, ok := s.MustGetPod("p").Annotations[nadv1.NetworkAttachmentAnnot]; ok {
		t.Errorf("annotation %q left, want it removed", got)
	}
	s.ExpectLinkNames("p")
}
