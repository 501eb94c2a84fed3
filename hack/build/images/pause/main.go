// Command pause is the sandbox (infra) container of the local e2e cluster: it holds the pod's
// namespaces open, reaps orphaned children (it is PID 1 of the pod) and exits on SIGINT/SIGTERM.
// It exists so the cluster needs no registry: hack/images/build-local-images.sh packs it into an
// image tarball from files.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reapChildren()
	}
}

// reapChildren collects every exited child so none stays a zombie; one SIGCHLD can stand for many.
func reapChildren() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
