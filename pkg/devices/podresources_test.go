package devices

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"
)

type fakeLister struct {
	resp *podresourcesapi.ListPodResourcesResponse
	err  error
}

func (f fakeLister) List(context.Context, *podresourcesapi.ListPodResourcesRequest, ...grpc.CallOption) (*podresourcesapi.ListPodResourcesResponse, error) {
	return f.resp, f.err
}

func TestPodResources(t *testing.T) {
	resp := &podresourcesapi.ListPodResourcesResponse{PodResources: []*podresourcesapi.PodResources{
		{Namespace: "ns", Name: "a", Containers: []*podresourcesapi.ContainerResources{
			{Name: "c1", Devices: []*podresourcesapi.ContainerDevices{{ResourceName: "netplug.io/veth", DeviceIds: []string{"npdev1"}}}},
			{Name: "c2", Devices: []*podresourcesapi.ContainerDevices{{ResourceName: "netplug.io/veth", DeviceIds: []string{"npdev2"}}, {ResourceName: "netplug.io/tun", DeviceIds: []string{"dev-net-tun"}}}},
		}},
		{Namespace: "ns", Name: "b", Containers: []*podresourcesapi.ContainerResources{
			{Name: "c", Devices: []*podresourcesapi.ContainerDevices{{ResourceName: "netplug.io/veth", DeviceIds: []string{"npdev3"}}}},
		}},
	}}
	r := &PodResources{Client: fakeLister{resp: resp}}
	got, err := r.Pod(context.Background(), "ns", "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got["netplug.io/veth"]) != 2 || got["netplug.io/veth"][1] != "npdev2" || got["netplug.io/tun"][0] != "dev-net-tun" || len(got) != 2 {
		t.Fatalf("Pod = %v", got)
	}
	all, err := r.Allocated(context.Background())
	if err != nil || len(all["netplug.io/veth"]) != 3 || !all["netplug.io/tun"]["dev-net-tun"] {
		t.Fatalf("Allocated = %v, %v", all, err)
	}
	bad := &PodResources{Client: fakeLister{err: errors.New("down")}}
	if _, err := bad.Pod(context.Background(), "ns", "a"); err == nil {
		t.Error("Pod: no error")
	}
	if _, err := bad.Allocated(context.Background()); err == nil {
		t.Error("Allocated: no error")
	}
	pr, conn, err := DialPodResources("/nonexistent/kubelet.sock", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close() //nolint:errcheck // test
	if _, err := pr.Pod(context.Background(), "ns", "a"); err == nil {
		t.Error("a missing socket answered")
	}
}
