package controller

import (
	"context"

	cni100 "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"

	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/cri"
	"github.com/netplug/netplug/pkg/multus"
	"github.com/netplug/netplug/pkg/status"
)

// The I/O boundaries of the reconcile loop. Each has one real implementation (cri.Client,
// multus.Client, status.Writer, checkpoint.Store) and a fake in the tests.

// Runtime finds the READY sandbox of a pod and its network namespace.
type Runtime interface {
	PodSandbox(ctx context.Context, podUID string) (cri.Sandbox, error)
}

// Delegate plugs and unplugs one interface.
type Delegate interface {
	Add(ctx context.Context, r multus.Request) (*cni100.Result, error)
	Del(ctx context.Context, r multus.Request) error
}

// StatusWriter writes what netplug owns on a pod: network-status changes and its finalizer.
type StatusWriter interface {
	Apply(ctx context.Context, pod *corev1.Pod, changes []status.Change) (*corev1.Pod, error)
	AddFinalizer(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error)
	RemoveFinalizer(ctx context.Context, pod *corev1.Pod) error
}

// Checkpoints remembers, on the node, how each interface was plugged.
type Checkpoints interface {
	Save(e checkpoint.Entry) error
	Delete(podUID, iface string) error
	List(podUID string) (checkpoint.Listing, error)
	Pods() ([]string, error)
}
