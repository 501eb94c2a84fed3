//go:build e2e

package e2e

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
)

// TestUninstall runs `make undeploy`'s script against the cluster and checks that no pod is left
// stuck on netplug's finalizer. It removes netplug, so it runs only when asked
// (NETPLUG_E2E_UNINSTALL=1), as the last step of hack/run/e2e.sh.
func TestUninstall(t *testing.T) {
	if os.Getenv("NETPLUG_E2E_UNINSTALL") != "1" {
		t.Skip("removes netplug from the cluster: set NETPLUG_E2E_UNINSTALL=1")
	}
	s := fw.newScenario(t, "uninst")
	s.createBridgeNAD("br", "np22", "10.222.0.0/24")
	s.runningPod("p")
	s.setNetworks("p", "br@hp1")
	s.waitAttached("p", "br", "hp1")
	s.waitFinalizer("p", true)

	script, err := filepath.Abs(filepath.Join("..", "hack", "run", "undeploy.sh"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script)
	cmd.Dir = filepath.Dir(filepath.Dir(filepath.Dir(script)))
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.env.Kubeconfig)
	out, err := cmd.CombinedOutput()
	t.Logf("undeploy:\n%s", out)
	if err != nil {
		t.Fatalf("undeploy failed: %v", err)
	}
	if _, err := s.kube.AppsV1().DaemonSets(netplugNamespace).Get(ctx, netplugDaemonSet, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the DaemonSet is still there: %v", err)
	}
	pods, err := s.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if slices.Contains(p.Finalizers, releaseFinalizer) {
			t.Errorf("pod %s/%s still carries %s", p.Namespace, p.Name, releaseFinalizer)
		}
	}
	s.deletePodAndWait("p") // gone without netplug: nothing holds it
	waitUntil(t, time.Minute, "no netplug pod left", func(ctx context.Context) (bool, string) {
		list, err := s.kube.CoreV1().Pods(netplugNamespace).List(ctx, metav1.ListOptions{LabelSelector: netplugSelector})
		if err != nil {
			return apierrors.IsNotFound(err), err.Error()
		}
		return len(list.Items) == 0, fmt.Sprintf("%d netplug pods", len(list.Items))
	})
}
