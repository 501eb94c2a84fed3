//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Processes on the node. The suite only signals processes it can tie to what it was asked to
// disrupt: the netplug container of the node's netplug pod (found by the pod's cgroup) and the
// components cluster-up recorded in $RUN_DIR/<name>.pid (the Multus daemon, containerd, the
// kube-apiserver).

// containerProcesses returns the PIDs of processes whose argv[0] is named comm and that run in
// a cgroup of the pod podUID (the kubelet names pod cgroups pod<UID>).
func containerProcesses(podUID types.UID, comm string) ([]int, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	uid := string(podUID)
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue // gone, or a kernel thread
		}
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		if filepath.Base(string(argv0)) != comm {
			continue
		}
		cgroup, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cgroup"))
		if err != nil {
			continue
		}
		cg := string(cgroup)
		if strings.Contains(cg, "pod"+uid) || strings.Contains(cg, "pod"+strings.ReplaceAll(uid, "-", "_")) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killNetplugController SIGKILLs the netplug-controller process of the node's netplug pod
// and returns its PID.
func (f *Framework) killNetplugController(ctx context.Context) (int, error) {
	pod, err := f.netplugPod(ctx)
	if err != nil {
		return 0, err
	}
	pids, err := containerProcesses(pod.UID, "netplug-controller")
	if err != nil {
		return 0, fmt.Errorf("scanning /proc: %w", err)
	}
	if len(pids) != 1 {
		return 0, fmt.Errorf("found %d netplug-controller processes in pod %s (%v), want 1", len(pids), pod.Name, pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("killing netplug-controller (pid %d): %w", pids[0], err)
	}
	return pids[0], nil
}

// netplugSeesMultusSocket reports whether the Multus socket exists as the netplug container
// sees it (through /proc/PID/root, which resolves paths in the process's mount namespace); if
// not, it returns the container's mounts of the socket's directories, which say why.
func (f *Framework) netplugSeesMultusSocket(ctx context.Context) (bool, string) {
	pod, err := f.netplugPod(ctx)
	if err != nil {
		return false, err.Error()
	}
	pids, err := containerProcesses(pod.UID, "netplug-controller")
	if err != nil || len(pids) != 1 {
		return false, fmt.Sprintf("netplug-controller processes of pod %s: %v %v", pod.Name, pids, err)
	}
	proc := fmt.Sprintf("/proc/%d", pids[0])
	if _, err := os.Stat(proc + "/root" + f.env.MultusSocket); err == nil {
		return true, ""
	}
	mountinfo, _ := os.ReadFile(proc + "/mountinfo")
	var mounts []string
	for _, line := range strings.Split(string(mountinfo), "\n") {
		if strings.Contains(line, filepath.Dir(filepath.Dir(f.env.MultusSocket))) {
			mounts = append(mounts, line)
		}
	}
	return false, fmt.Sprintf("%s is not visible in the netplug container; its mounts: %q", f.env.MultusSocket, mounts)
}

// startTicks is when the process started, in clock ticks since boot (field 22 of
// /proc/PID/stat); with the PID it names one process for good, as hack/cluster/common.sh does.
func startTicks(pid int) (string, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return "", fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 || fields[0] == "Z" {
		return "", fmt.Errorf("process %d has exited", pid)
	}
	return fields[19], nil
}

// component is a cluster process recorded by cluster-up in $RUN_DIR/<name>.pid: how it was
// started, so that a test can stop it and start it again the same way.
type component struct {
	f       *Framework
	name    string
	pidFile string
	pid     int
	argv    []string
	environ []string
	dir     string
}

// findComponent reads $RUN_DIR/<name>.pid ("PID\nSTART_TICKS"), checks that the process is
// still the one recorded and that it runs the binary named binary.
func (f *Framework) findComponent(name, binary string) (*component, error) {
	pidFile := filepath.Join(f.env.RunDir, name+".pid")
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return nil, fmt.Errorf("the PID file of %s: %w", name, err)
	}
	lines := strings.Fields(string(raw))
	if len(lines) == 0 {
		return nil, fmt.Errorf("%s is empty", pidFile)
	}
	pid, err := strconv.Atoi(lines[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pidFile, err)
	}
	ticks, err := startTicks(pid)
	if err != nil {
		return nil, fmt.Errorf("recorded %s: %w", name, err)
	}
	if len(lines) > 1 && lines[1] != ticks {
		return nil, fmt.Errorf("PID %d in %s is no longer %s", pid, pidFile, name)
	}
	proc := fmt.Sprintf("/proc/%d", pid)
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return nil, err
	}
	environ, err := os.ReadFile(proc + "/environ")
	if err != nil {
		return nil, err
	}
	dir, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return nil, err
	}
	split := func(b []byte) []string { return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00") }
	c := &component{f: f, name: name, pidFile: pidFile, pid: pid, argv: split(cmdline), environ: split(environ), dir: dir}
	if filepath.Base(c.argv[0]) != binary {
		return nil, fmt.Errorf("PID %d runs %q, not %s", pid, c.argv[0], binary)
	}
	return c, nil
}

// findMultusDaemon is the recorded Multus thick daemon.
func (f *Framework) findMultusDaemon() (*component, error) {
	return f.findComponent("multus-daemon", "multus-daemon")
}

// stop sends SIGTERM and waits for the process to exit (SIGKILL after 20 s).
func (c *component) stop() error {
	if err := syscall.Kill(c.pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping %s (pid %d): %w", c.name, c.pid, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := startTicks(c.pid); err != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(c.pid, syscall.SIGKILL)
	return nil
}

// start runs the process again with the same arguments, environment and directory, in its own
// session (it must outlive the test binary), appending to the log cluster-up set up, and
// records it in the PID file so that cluster-down stops it. It waits until healthy answers nil.
func (c *component) start(ctx context.Context, healthy func(ctx context.Context) error) error {
	log, err := os.OpenFile(filepath.Join(c.f.env.LogDir, c.name+".log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }()
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Env, cmd.Dir = c.environ, c.dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", c.name, err)
	}
	pid := cmd.Process.Pid
	ticks, err := startTicks(pid)
	if err != nil {
		return fmt.Errorf("the restarted %s: %w", c.name, err)
	}
	if err := os.WriteFile(c.pidFile, []byte(fmt.Sprintf("%d\n%s\n", pid, ticks)), 0o644); err != nil {
		return err
	}
	_ = cmd.Process.Release()
	c.pid = pid
	for {
		err := healthy(ctx)
		if err == nil {
			return nil
		}
		if !processAlive(pid) {
			return fmt.Errorf("the restarted %s (pid %d) exited; see %s.log: %w", c.name, pid, c.name, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("the restarted %s is not healthy: %w", c.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restart stops the component, waits pause, and starts it again (see start).
func (c *component) restart(ctx context.Context, pause time.Duration, healthy func(ctx context.Context) error) error {
	if err := c.stop(); err != nil {
		return err
	}
	time.Sleep(pause)
	return c.start(ctx, healthy)
}

// multusHealthy asks the daemon's /healthz over its socket.
func (f *Framework) multusHealthy(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", f.env.MultusSocket)
		},
	}}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://multus/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz answered %s", resp.Status)
	}
	return nil
}

// stopMultus stops the Multus daemon and returns a function that starts it again; the test's
// cleanup starts it too if the test ends first, so a failure never leaves the node without it.
func (f *Framework) stopMultus(t *testing.T) (restart func()) {
	t.Helper()
	d, err := f.findMultusDaemon()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped the Multus daemon (pid %d)", d.pid)
	stopped := true
	restart = func() {
		t.Helper()
		if !stopped {
			return
		}
		stopped = false
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := d.start(ctx, f.multusHealthy); err != nil {
			t.Fatal(err)
		}
		t.Logf("started the Multus daemon again (pid %d)", d.pid)
	}
	t.Cleanup(restart)
	return restart
}

// processAlive reports whether pid still runs.
func processAlive(pid int) bool {
	_, err := startTicks(pid)
	return err == nil
}
