//go:build e2e

package suite

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/netplug/netplug/e2e/framework"
)

// TestUninstall runs `make undeploy`'s script against the cluster and checks that no pod is left
// stuck on netplug's finalizer. It removes netplug, so it runs only when asked
// (NETPLUG_E2E_UNINSTALL=1), as the last step of hack/run/e2e.sh.
func TestUninstall(t *testing.T) {
	if os.Getenv("NETPLUG_E2E_UNINSTALL") != "1" {
		t.Skip("removes netplug from the cluster: set NETPLUG_E2E_UNINSTALL=1")
	}
	s := newScenario(t, "uninst")
	s.CreateBridgeNAD("br", "np22", "10.222.0.0/24")
	s.RunningPod("p")
	s.SetNetworks("p", "br@hp1")
	s.WaitAttached("p", "br", "hp1")
	s.waitFinalizer("p", true)

	root, err := framework.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "hack", "run", "undeploy.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.Env.Kubeconfig)
	out, err := cmd.CombinedOutput()
	t.Logf("undeploy:\n%s", out)
	if err != nil {
		t.Fatalf("undeploy failed: %v", err)
	}
	if _, err := s.Kube.AppsV1().DaemonSets(framework.NetplugNamespace).Get(ctx, framework.NetplugDaemonSet, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the DaemonSet is still there: %v", err)
	}
	pods, err := s.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if slices.Contains(p.Finalizers, releaseFinalizer) {
			t.Errorf("pod %s/%s still carries %s", p.Namespace, p.Name, releaseFinalizer)
		}
	}
	s.deletePodAndWait("p") // gone without netplug: nothing holds it
	framework.WaitUntil(t, time.Minute, "no netplug pod left", func(ctx context.Context) (bool, string) {
		list, err := s.Kube.CoreV1().Pods(framework.NetplugNamespace).List(ctx, metav1.ListOptions{LabelSelector: framework.NetplugSelector})
		if err != nil {
			return apierrors.IsNotFound(err), err.Error()
		}
		return len(list.Items) == 0, fmt.Sprintf("%d netplug pods", len(list.Items))
	})
}
