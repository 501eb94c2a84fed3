//go:build e2e

package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/netplug/netplug/e2e/framework"
	"github.com/netplug/netplug/e2e/report"
)

// runFaults injects the planned faults as the edits go by: those that replace the controller
// in the first third of the run, then the footprint baseline after a warm-up, then the others
// up to 90 % of the run. Each starts once the run reached its edit and the previous one ended.
func (s *soak) runFaults(ctx context.Context) {
	n := int64(s.params.Cycles)
	var early, late []string
	for _, f := range s.params.Faults {
		if restartsController(f) {
			early = append(early, f)
		} else {
			late = append(late, f)
		}
	}
	at := func(i, of int, from, to float64) int64 { // i-th of `of` steps spread over [from, to] of the run
		return int64((from + (to-from)*float64(i+1)/float64(of+1)) * float64(n))
	}
	for i, f := range early {
		s.injectAt(ctx, f, at(i, len(early), 0, 0.35))
	}
	// The baseline comes after the controller replaced by the faults above has served a tenth of
	// the run's edits.
	baselineAt := max(n*45/100, s.cycles.Load()+n/10)
	if !s.waitForEdit(ctx, baselineAt) {
		return
	}
	s.res.Baseline = s.footprint(s.T, "after warm-up")
	s.res.BaselineAtEdit = s.cycles.Load()
	for i, f := range late {
		s.injectAt(ctx, f, max(at(i, len(late), 0.5, 0.9), s.cycles.Load()+1))
	}
}

func (s *soak) waitForEdit(ctx context.Context, edit int64) bool {
	_, err := framework.Poll(ctx, 50*time.Millisecond, 0, func(context.Context) (bool, string) {
		return s.cycles.Load() >= edit, "edit not reached"
	})
	return err == nil
}

func (s *soak) injectAt(ctx context.Context, fault string, edit int64) {
	if !s.waitForEdit(ctx, edit) {
		return
	}
	rec := report.FaultRecord{Name: fault, AtEdit: s.cycles.Load()}
	s.T.Logf("FAULT %s at edit %d", fault, rec.AtEdit)
	start := time.Now()
	before := s.controllerIdentity(ctx)
	faultCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	detail, err := s.inject(faultCtx, fault)
	cancel()
	rec.Seconds, rec.Detail = report.Round2(time.Since(start).Seconds()), detail
	rec.Restarted = before != s.controllerIdentity(ctx)
	if err != nil {
		rec.Error = err.Error()
		s.problem("fault %s: %v", fault, err)
	}
	if rec.Restarted != restartsController(fault) {
		s.problem("fault %s: the controller process was replaced: %t, expected %t", fault, rec.Restarted, restartsController(fault))
	}
	s.T.Logf("FAULT %s done in %.1fs: %s", fault, rec.Seconds, detail)
	s.mu.Lock()
	s.res.Faults = append(s.res.Faults, rec)
	s.mu.Unlock()
}

func (s *soak) inject(ctx context.Context, fault string) (string, error) {
	switch fault {
	case "controller-kill":
		return s.faultControllerKill(ctx)
	case "controller-down":
		return s.faultControllerDown(ctx)
	case "multus-restart":
		return s.faultMultusRestart(ctx)
	case "nad-deleted":
		return s.faultNADDeleted(ctx)
	case "containerd-restart":
		return s.restartComponent(ctx, "containerd", "containerd", s.Cri.Check)
	case "apiserver-restart":
		return s.restartComponent(ctx, "kube-apiserver", "kube-apiserver", func(ctx context.Context) error {
			_, err := s.Kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			return err
		})
	}
	return "", fmt.Errorf("unknown fault %q", fault)
}

// controllerIdentity names the running netplug-controller process ("pid/start"), or "".
func (s *soak) controllerIdentity(ctx context.Context) string {
	callCtx, cancel := context.WithTimeout(ctx, framework.ApiTimeout)
	defer cancel()
	pod, err := s.NetplugPod(callCtx)
	if err != nil {
		return ""
	}
	pids, err := framework.ContainerProcesses(pod.UID, "netplug-controller")
	if err != nil || len(pids) != 1 {
		return ""
	}
	ticks, _ := framework.StartTicks(pids[0])
	return fmt.Sprintf("%d/%s", pids[0], ticks)
}

// borrowPluggedPod takes a pod away from its worker (the caller unlocks it) and makes sure
// netplug has hot-plugged at least one interface into it, so that deleting it means work for
// the release path.
func (s *soak) borrowPluggedPod(ctx context.Context) (*soakPod, error) {
	p := s.pods[int(s.cycles.Load())%len(s.pods)]
	p.mu.Lock()
	// Without its pool device: this pod is deleted while netplug is down, and nothing then holds
	// its sandbox (with the veth in it) back (see recreatePod).
	p.want = append(slices.DeleteFunc(p.want, func(e framework.Element) bool { return e.Name == "dv" }),
		framework.Element{Name: "a", Interface: "sfault"})
	value := framework.Selection(p.want...)
	err := s.retryAPI(ctx, "editing pod "+p.name, func(ctx context.Context) error {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, nadv1.NetworkAttachmentAnnot, value)
		_, err := s.Kube.CoreV1().Pods(s.Ns).Patch(ctx, p.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	})
	if err == nil {
		err = s.waitConverged(ctx, p)
	}
	if err == nil {
		err = s.waitDevicesReturned(ctx, p)
	}
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	return p, nil
}

// sandboxAllocations counts the host-local allocations held by a sandbox (host-local writes
// the container ID on the first line of each address file).
func (s *soak) sandboxAllocations(sandboxID string) int {
	n := 0
	for _, nad := range []string{"a", "b"} {
		dir := s.Env.IPAMDir + "/" + s.CniName(nad)
		ips, _ := s.IpamAllocations(nad)
		for _, ip := range ips {
			raw, err := os.ReadFile(dir + "/" + ip)
			if err == nil && strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[0]) == sandboxID {
				n++
			}
		}
	}
	return n
}

// releaseWhileDown deletes the borrowed pod while netplug is down, calls up to bring netplug
// back, and checks that the pod's hot-plugged addresses are released. Whatever happens, the
// pod is created again for its worker once the old one is gone.
func (s *soak) releaseWhileDown(ctx context.Context, p *soakPod, up func() error) (detail string, err error) {
	sandbox, err := s.Cri.PodSandbox(ctx, string(p.uid))
	if err != nil {
		return "", err
	}
	held := s.sandboxAllocations(sandbox.ID)
	if err := s.deletePod(ctx, p); err != nil {
		return "", err
	}
	deleted := time.Now()
	defer func() {
		if goneErr := s.waitGone(ctx, p); goneErr != nil {
			err = errors.Join(err, fmt.Errorf("the pod deleted while netplug was down: %w", goneErr))
			return
		}
		s.recreations.Add(1)
		err = errors.Join(err, s.createPod(ctx, p))
	}()
	if err := up(); err != nil {
		return "", err
	}
	if err := s.waitGone(ctx, p); err != nil {
		return "", err
	}
	gone := time.Since(deleted)
	if err := s.poll(ctx, 30*time.Second, func(context.Context) (bool, string) {
		n := s.sandboxAllocations(sandbox.ID)
		return n == 0, fmt.Sprintf("%d addresses still held by sandbox %.12s", n, sandbox.ID)
	}); err != nil {
		return "", err
	}
	return fmt.Sprintf("pod %s deleted with %d host-local addresses while netplug was down; gone %.1fs later, addresses released",
		p.name, held, gone.Seconds()), nil
}

// faultControllerKill SIGKILLs the controller and deletes a pod it plugged before the kubelet
// restarts it.
func (s *soak) faultControllerKill(ctx context.Context) (string, error) {
	p, err := s.borrowPluggedPod(ctx)
	if err != nil {
		return "", err
	}
	defer p.mu.Unlock()
	np, err := s.NetplugPod(ctx)
	if err != nil {
		return "", err
	}
	before := framework.Restarts(np)
	pid, err := s.KillNetplugController(ctx)
	if err != nil {
		return "", err
	}
	detail, err := s.releaseWhileDown(ctx, p, func() error {
		_, err := s.WaitNetplugReady(ctx, "", before)
		return err
	})
	return fmt.Sprintf("SIGKILLed pid %d; %s", pid, detail), err
}

// faultControllerDown takes netplug off the node (its DaemonSet made to require a node label
// the node lacks), deletes a pod netplug plugged, waits, and brings netplug back: the new
// controller must release the pod's interfaces from its checkpoints.
func (s *soak) faultControllerDown(ctx context.Context) (string, error) {
	p, err := s.borrowPluggedPod(ctx)
	if err != nil {
		return "", err
	}
	defer p.mu.Unlock()
	old, err := s.NetplugPod(ctx)
	if err != nil {
		return "", err
	}
	s.keepLogs(old)
	if err := s.PauseNetplug(ctx); err != nil {
		return "", err
	}
	var heldBy string
	detail, err := s.releaseWhileDown(ctx, p, func() error {
		time.Sleep(3 * time.Second) // the pod is deleted, the kubelet stops it, nobody releases
		got, err := s.Kube.CoreV1().Pods(s.Ns).Get(ctx, p.name, metav1.GetOptions{})
		if err == nil && got.UID == p.uid {
			heldBy = fmt.Sprintf("; it waited for netplug with finalizers %v", got.Finalizers)
		}
		return s.ResumeNetplug(ctx)
	})
	return "netplug taken off the node; " + detail + heldBy, err
}

// keepLogs follows the netplug container's log into $LOG_DIR/soak-<pod>.log until it exits:
// the pod is about to be deleted, and its logs with it (diagnostics and CI artifacts keep them).
func (s *soak) keepLogs(pod *corev1.Pod) {
	file, err := os.Create(filepath.Join(s.Env.LogDir, "soak-"+pod.Name+".log"))
	if err != nil {
		s.T.Logf("keeping the logs of %s: %v", pod.Name, err)
		return
	}
	go func() {
		defer func() { _ = file.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		stream, err := s.Kube.CoreV1().Pods(framework.NetplugNamespace).GetLogs(pod.Name,
			&corev1.PodLogOptions{Container: framework.NetplugContainer, Follow: true}).Stream(ctx)
		if err != nil {
			return
		}
		defer func() { _ = stream.Close() }()
		_, _ = io.Copy(file, stream)
	}()
}

// restoreDaemonSet undoes controller-down if the run ended in the middle of it.
func (s *soak) restoreDaemonSet() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if paused, err := s.NetplugPaused(ctx); err != nil || !paused {
		return
	}
	s.T.Logf("cleanup: bringing netplug back on the node")
	if err := s.ResumeNetplug(ctx); err != nil {
		s.T.Errorf("cleanup: %v", err)
	}
}

// faultMultusRestart restarts the Multus daemon; it recreates its socket directory, so the
// kubelet restarts netplug (liveness), which must then reach the new daemon.
func (s *soak) faultMultusRestart(ctx context.Context) (string, error) {
	d, err := s.FindMultusDaemon()
	if err != nil {
		return "", err
	}
	oldPID := d.Pid
	if err := d.Restart(ctx, 2*time.Second, s.MultusHealthy); err != nil {
		return "", err
	}
	back := time.Now()
	if err := s.poll(ctx, 2*time.Minute, func(ctx context.Context) (bool, string) {
		return s.NetplugSeesMultusSocket(ctx)
	}); err != nil {
		return "", err
	}
	if _, err := s.WaitNetplugReady(ctx, "", -1); err != nil {
		return "", err
	}
	return fmt.Sprintf("Multus pid %d -> %d; netplug reached the new socket %.1fs after it was back",
		oldPID, d.Pid, time.Since(back).Seconds()), nil
}

// faultNADDeleted deletes NAD b while pods have it attached, lets the edits go on for 5 s
// (unplugs from b must still work, from netplug's checkpoints; plugs wait) and creates it again.
func (s *soak) faultNADDeleted(ctx context.Context) (string, error) {
	nads := s.Nads.K8sCniCncfIoV1().NetworkAttachmentDefinitions(s.Ns)
	nad, err := nads.Get(ctx, "b", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	attached := 0
	for _, p := range s.pods {
		if pod, err := s.lister.Get(p.name); err == nil {
			st, _ := soakStatus(pod)
			for _, e := range st {
				if e.Name == s.Ns+"/b" {
					attached++
				}
			}
		}
	}
	if err := nads.Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		return "", err
	}
	time.Sleep(5 * time.Second)
	again := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: nad.Spec}
	if err := s.retryAPI(ctx, "creating NAD b again", func(ctx context.Context) error {
		_, err := nads.Create(ctx, again, metav1.CreateOptions{})
		return err
	}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	return fmt.Sprintf("NAD b deleted for 5s with %d interfaces attached to it", attached), nil
}

// restartComponent restarts a cluster component recorded by cluster-up and waits until it is
// healthy and netplug is Ready again.
func (s *soak) restartComponent(ctx context.Context, name, binary string, healthy func(ctx context.Context) error) (string, error) {
	c, err := s.FindComponent(name, binary)
	if err != nil {
		return "", err
	}
	oldPID := c.Pid
	start := time.Now()
	if err := c.Restart(ctx, time.Second, healthy); err != nil {
		return "", err
	}
	healthyAfter := time.Since(start)
	if _, err := s.WaitNetplugReady(ctx, "", -1); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s pid %d -> %d, healthy again after %.1fs", name, oldPID, c.Pid, healthyAfter.Seconds()), nil
}

// ---------------------------------------------------------------------------------------------
// Footprint: goroutines and RSS of the controller, with the churn paused and every pod converged.

// footprint pauses the workers, waits until every pod converged and 2 s more, and takes the
// median of three readings a second apart.
func (s *soak) footprint(t *testing.T, at string) *report.Footprint {
	s.gate.Lock()
	defer s.gate.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), soakConverge)
	defer cancel()
	for _, p := range s.pods {
		if err := s.waitConverged(ctx, p); err != nil {
			s.problem("footprint %s: pod %s: %v", at, p.name, err)
		}
	}
	time.Sleep(2 * time.Second)
	m, err := fw.NewProcessMonitor(t)
	if err != nil {
		s.problem("footprint %s: %v", at, err)
		return nil
	}
	var gor, rss, heap []float64
	for i := range 3 {
		if i > 0 {
			time.Sleep(time.Second)
		}
		sample, err := m.Sample()
		metrics := framework.ScrapeMetrics()
		if err != nil || metrics == nil {
			s.problem("footprint %s: reading the controller: %v (metrics read: %t)", at, err, metrics != nil)
			return nil
		}
		gor = append(gor, metrics.Sum("go_goroutines"))
		heap = append(heap, metrics.Sum("go_memstats_heap_inuse_bytes")/(1<<20))
		rss = append(rss, report.Kib2mib(sample.RssKiB))
	}
	median := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
	f := &report.Footprint{At: at, PID: m.Pid, Goroutines: median(gor), RSSMiB: median(rss), HeapMiB: report.Round2(median(heap)),
		Identity: fmt.Sprintf("%d/%s", m.Pid, m.StartTicks)}
	t.Logf("footprint %s: pid %d, %.0f goroutines, RSS %.1f MiB, heap in use %.1f MiB", at, f.PID, f.Goroutines, f.RSSMiB, f.HeapMiB)
	return f
}

// ---------------------------------------------------------------------------------------------
// Host state.

// hostLinks lists the host's links by index.
func hostLinks(t *testing.T) map[int]netlink.Link {
	t.Helper()
	links, err := netlinkLinks()
	if err != nil {
		t.Fatalf("listing host links: %v", err)
	}
	return links
}
