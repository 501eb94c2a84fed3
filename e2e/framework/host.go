//go:build e2e

package framework

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

// ContainerProcesses returns the PIDs of processes whose argv[0] is named comm and that run in
// a cgroup of the pod podUID (the kubelet names pod cgroups pod<UID>).
func ContainerProcesses(podUID types.UID, comm string) ([]int, error) {
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

// KillNetplugController SIGKILLs the netplug-controller process of the node's netplug pod
// and returns its PID.
func (f *Framework) KillNetplugController(ctx context.Context) (int, error) {
	pod, err := f.NetplugPod(ctx)
	if err != nil {
		return 0, err
	}
	pids, err := ContainerProcesses(pod.UID, "netplug-controller")
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

// NetplugSeesMultusSocket reports whether the Multus socket exists as the netplug container
// sees it (through /proc/PID/root, which resolves paths in the process's mount namespace); if
// not, it returns the container's mounts of the socket's directories, which say why.
func (f *Framework) NetplugSeesMultusSocket(ctx context.Context) (bool, string) {
	pod, err := f.NetplugPod(ctx)
	if err != nil {
		return false, err.Error()
	}
	pids, err := ContainerProcesses(pod.UID, "netplug-controller")
	if err != nil || len(pids) != 1 {
		return false, fmt.Sprintf("netplug-controller processes of pod %s: %v %v", pod.Name, pids, err)
	}
	proc := fmt.Sprintf("/proc/%d", pids[0])
	if _, err := os.Stat(proc + "/root" + f.Env.MultusSocket); err == nil {
		return true, ""
	}
	mountinfo, _ := os.ReadFile(proc + "/mountinfo")
	var mounts []string
	for _, line := range strings.Split(string(mountinfo), "\n") {
		if strings.Contains(line, filepath.Dir(filepath.Dir(f.Env.MultusSocket))) {
			mounts = append(mounts, line)
		}
	}
	return false, fmt.Sprintf("%s is not visible in the netplug container; its mounts: %q", f.Env.MultusSocket, mounts)
}

// StartTicks is when the process started, in clock ticks since boot (field 22 of
// /proc/PID/stat); with the PID it names one process for good, as hack/cluster/common.sh does.
func StartTicks(pid int) (string, error) {
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

// Component is a cluster process recorded by cluster-up in $RUN_DIR/<name>.pid: how it was
// started, so that a test can stop it and start it again the same way.
type Component struct {
	f       *Framework
	name    string
	pidFile string
	Pid     int
	Argv    []string
	environ []string
	dir     string
}

// FindComponent reads $RUN_DIR/<name>.pid ("PID\nSTART_TICKS"), checks that the process is
// still the one recorded and that it runs the binary named binary.
func (f *Framework) FindComponent(name, binary string) (*Component, error) {
	pidFile := filepath.Join(f.Env.RunDir, name+".pid")
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
	ticks, err := StartTicks(pid)
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
	c := &Component{f: f, name: name, pidFile: pidFile, Pid: pid, Argv: split(cmdline), environ: split(environ), dir: dir}
	if filepath.Base(c.Argv[0]) != binary {
		return nil, fmt.Errorf("PID %d runs %q, not %s", pid, c.Argv[0], binary)
	}
	return c, nil
}

// FindMultusDaemon is the recorded Multus thick daemon.
func (f *Framework) FindMultusDaemon() (*Component, error) {
	return f.FindComponent("multus-daemon", "multus-daemon")
}

// stop sends SIGTERM and waits for the process to exit (SIGKILL after 20 s).
func (c *Component) stop() error {
	if err := syscall.Kill(c.Pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping %s (pid %d): %w", c.name, c.Pid, err)
	}
	if _, err := Poll(context.Background(), 50*time.Millisecond, 20*time.Second, func(context.Context) (bool, string) {
		return !ProcessAlive(c.Pid), "still running"
	}); err != nil {
		_ = syscall.Kill(c.Pid, syscall.SIGKILL)
	}
	return nil
}

// start runs the process again with the same arguments, environment and directory, in its own
// session (it must outlive the test binary), appending to the log cluster-up set up, and
// records it in the PID file so that cluster-down stops it. It waits until healthy answers nil.
func (c *Component) start(ctx context.Context, healthy func(ctx context.Context) error) error {
	log, err := os.OpenFile(filepath.Join(c.f.Env.LogDir, c.name+".log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = log.Close() }()
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Env, cmd.Dir = c.environ, c.dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", c.name, err)
	}
	pid := cmd.Process.Pid
	ticks, err := StartTicks(pid)
	if err != nil {
		return fmt.Errorf("the restarted %s: %w", c.name, err)
	}
	if err := os.WriteFile(c.pidFile, []byte(fmt.Sprintf("%d\n%s\n", pid, ticks)), 0o644); err != nil {
		return err
	}
	_ = cmd.Process.Release()
	c.Pid = pid
	var unhealthy error
	exited := false
	_, err = Poll(ctx, 100*time.Millisecond, 0, func(ctx context.Context) (bool, string) {
		if unhealthy = healthy(ctx); unhealthy == nil {
			return true, ""
		}
		exited = !ProcessAlive(pid)
		return exited, unhealthy.Error()
	})
	switch {
	case exited:
		return fmt.Errorf("the restarted %s (pid %d) exited; see %s.log: %w", c.name, pid, c.name, unhealthy)
	case err != nil:
		return fmt.Errorf("the restarted %s is not healthy: %w", c.name, unhealthy)
	}
	return nil
}

// Restart stops the component, waits pause, and starts it again (see start).
func (c *Component) Restart(ctx context.Context, pause time.Duration, healthy func(ctx context.Context) error) error {
	if err := c.stop(); err != nil {
		return err
	}
	time.Sleep(pause)
	return c.start(ctx, healthy)
}

// MultusHealthy asks the daemon's /healthz over its socket.
func (f *Framework) MultusHealthy(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", f.Env.MultusSocket)
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

// StopMultus stops the Multus daemon and returns a function that starts it again; the test's
// cleanup starts it too if the test ends first, so a failure never leaves the node without it.
func (f *Framework) StopMultus(t *testing.T) (restart func()) {
	t.Helper()
	d, err := f.FindMultusDaemon()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped the Multus daemon (pid %d)", d.Pid)
	stopped := true
	restart = func() {
		t.Helper()
		if !stopped {
			return
		}
		stopped = false
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := d.start(ctx, f.MultusHealthy); err != nil {
			t.Fatal(err)
		}
		t.Logf("started the Multus daemon again (pid %d)", d.Pid)
	}
	t.Cleanup(restart)
	return restart
}

// ProcessAlive reports whether pid still runs.
func ProcessAlive(pid int) bool {
	_, err := StartTicks(pid)
	return err == nil
}
