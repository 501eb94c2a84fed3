package devices

import (
	"context"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// NIC is a NIC of a pool that the kubelet allocated to a pod, with the host-device config that
// moves it in under its own name.
type NIC struct {
	Pool   Pool
	Device Device
	Config []byte
}

// PodLister says which devices the kubelet allocated to a pod (PodResources).
type PodLister interface {
	Pod(ctx context.Context, namespace, name string) (PodDevices, error)
}

// Source is the controller's view of the pools: which NICs a pod holds, and which are in pods.
type Source struct {
	States map[string]*State // by resource name
	Pods   PodLister
	// Host reads a link's addresses and MTU before it moves; nil carries none.
	Host HostLinks
	// Allocations says which devices the kubelet allocated (PodResources); a hot-plug pick
	// needs it.
	Allocations Allocations

	mu     sync.Mutex
	onFree func(resource string)
}

// SetOnFree sets who is told when a device of a pool may have become free (a hot-plugged one
// returned, one came back healthy, the kubelet released one): the controller, made after the
// pools start.
func (s *Source) SetOnFree(f func(resource string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onFree = f
}

// Freed tells SetOnFree's function that a device of pool resource may be free.
func (s *Source) Freed(resource string) {
	s.mu.Lock()
	f := s.onFree
	s.mu.Unlock()
	if f != nil {
		f(resource)
	}
}

// Requests reports whether the pod asks for a NIC of a pool in a limit of any container.
func (s *Source) Requests(pod *corev1.Pod) bool {
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		for name := range c.Resources.Limits {
			if st, ok := s.States[string(name)]; ok && st.Pool.Kind() == KindNIC {
				return true
			}
		}
	}
	return false
}

// PodNICs lists the NICs the kubelet allocated to the pod. hostErr reports a NIC whose host
// addresses could not be read: it still moves, without them.
func (s *Source) PodNICs(ctx context.Context, pod *corev1.Pod) (nics []NIC, hostErrs []error, err error) {
	allocated, err := s.Pods.Pod(ctx, pod.Namespace, pod.Name)
	if err != nil {
		return nil, nil, err
	}
	for resource, ids := range allocated {
		st, ok := s.States[resource]
		if !ok || st.Pool.Kind() != KindNIC {
			continue
		}
		for _, id := range ids {
			d, ok := st.Lookup(id)
			if !ok {
				continue
			}
			var host HostState
			if s.Host != nil {
				if host, err = s.Host.State(d.Interface); err != nil {
					hostErrs = append(hostErrs, err)
				}
			}
			nics = append(nics, NIC{Pool: st.Pool, Device: d, Config: HostDeviceConfig(st.Pool, d.Interface, host)})
		}
	}
	slices.SortFunc(nics, func(a, b NIC) int {
		if a.Device.Interface < b.Device.Interface {
			return -1
		}
		return 1
	})
	return nics, hostErrs, nil
}

// MarkInPod records that the NIC named iface of pool resource is in a pod, or back.
func (s *Source) MarkInPod(resource, iface string, in bool) {
	if st, ok := s.States[resource]; ok {
		st.MarkInPod(iface, in)
	}
}
