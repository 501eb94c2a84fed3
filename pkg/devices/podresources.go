package devices

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// PodDevices are the device IDs the kubelet allocated to one pod, by resource name.
type PodDevices map[string][]string

// Lister lists what the kubelet allocated (PodResourcesListerClient.List).
type Lister interface {
	List(ctx context.Context, in *podresourcesapi.ListPodResourcesRequest, opts ...grpc.CallOption) (*podresourcesapi.ListPodResourcesResponse, error)
}

// PodResources answers which pod holds which devices, from the kubelet's PodResources API. It
// knows pods by namespace and name: the API carries no UID.
type PodResources struct {
	Client  Lister
	Timeout time.Duration
}

// DialPodResources connects to the kubelet's PodResources socket
// (/var/lib/kubelet/pod-resources/kubelet.sock). The connection is made lazily.
func DialPodResources(socket string, timeout time.Duration) (*PodResources, *grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("PodResources socket %s: %w", socket, err)
	}
	return &PodResources{Client: podresourcesapi.NewPodResourcesListerClient(conn), Timeout: timeout}, conn, nil
}

func (r *PodResources) list(ctx context.Context) (*podresourcesapi.ListPodResourcesResponse, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := r.Client.List(ctx, &podresourcesapi.ListPodResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("PodResources List: %w", err)
	}
	return resp, nil
}

// Pod returns the devices of the pod namespace/name, over all its containers (init ones too).
func (r *PodResources) Pod(ctx context.Context, namespace, name string) (PodDevices, error) {
	resp, err := r.list(ctx)
	if err != nil {
		return nil, err
	}
	out := PodDevices{}
	for _, pod := range resp.GetPodResources() {
		if pod.GetNamespace() != namespace || pod.GetName() != name {
			continue
		}
		for _, c := range pod.GetContainers() {
			for _, d := range c.GetDevices() {
				out[d.GetResourceName()] = append(out[d.GetResourceName()], d.GetDeviceIds()...)
			}
		}
	}
	return out, nil
}

// Allocated returns, by resource name, the device IDs the kubelet allocated to any pod.
func (r *PodResources) Allocated(ctx context.Context) (map[string]map[string]bool, error) {
	resp, err := r.list(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]bool{}
	for _, pod := range resp.GetPodResources() {
		for _, c := range pod.GetContainers() {
			for _, d := range c.GetDevices() {
				if out[d.GetResourceName()] == nil {
					out[d.GetResourceName()] = map[string]bool{}
				}
				for _, id := range d.GetDeviceIds() {
					out[d.GetResourceName()][id] = true
				}
			}
		}
	}
	return out, nil
}
