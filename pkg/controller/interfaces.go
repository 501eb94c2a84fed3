package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/checkpoint"
	"github.com/netplug/netplug/pkg/cri"
	"github.com/netplug/netplug/pkg/executor"
	"github.com/netplug/netplug/pkg/podwriter"
)

// The I/O boundaries of the reconciler. Each has one real implementation (cri.Client,
// podwriter.Writer, checkpoint.Store, executor.Executor) and a fake or a real one over fakes in
// the tests.

// Runtime finds the READY sandbox of a pod and its network namespace.
type Runtime interface {
	PodSandbox(ctx context.Context, podUID string) (cri.Sandbox, error)
}

// PodWriter writes what netplug owns on a pod: network-status changes and its finalizer.
type PodWriter interface {
	Apply(ctx context.Context, pod *corev1.Pod, u podwriter.Update) (*corev1.Pod, error)
	AddFinalizer(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error)
	RemoveFinalizer(ctx context.Context, pod *corev1.Pod) error
}

// Checkpoints lists what netplug recorded on the node; the executor writes the records.
type Checkpoints interface {
	List(podUID string) (checkpoint.Listing, error)
	Pods() ([]string, error)
}

// Executor carries out one attachment step with its record, metric and typed failure.
type Executor interface {
	Add(ctx context.Context, sb executor.Sandbox, a attachment.Attachment, config []byte) executor.Outcome
	AddDevice(ctx context.Context, sb executor.Sandbox, a attachment.Attachment, config []byte, dev *checkpoint.Device) executor.Outcome
	Adopt(sb executor.Sandbox, a attachment.Attachment, config []byte) executor.Outcome
	Del(ctx context.Context, rec checkpoint.Entry) executor.Outcome
	Release(ctx context.Context, rec checkpoint.Entry) executor.Outcome
	Confirm(outcomes []executor.Outcome) ([]executor.Outcome, error)
}
