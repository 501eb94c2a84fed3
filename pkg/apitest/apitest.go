// Package apitest makes client-go's fake clientset behave like the API server where netplug's
// correctness depends on it: every write gets a new resourceVersion, and a write that names an
// older one fails with a Conflict. The plain fake neither sets nor checks resourceVersions, so a
// compare-and-swap written against it is never really tested.
package apitest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

// Fake is the part of a fake clientset this package needs.
type Fake interface {
	PrependReactor(verb, resource string, reaction k8stesting.ReactionFunc)
	Tracker() k8stesting.ObjectTracker
}

// EnforceResourceVersion installs, for resource (e.g. "pods"), reactors that give every created
// or written object a new resourceVersion and refuse updates and patches whose resourceVersion
// precondition is not the stored one.
func EnforceResourceVersion(f Fake, resource string) {
	var mu sync.Mutex
	next := 1000
	tracker := f.Tracker()
	bump := func(action k8stesting.Action, name string) (runtime.Object, error) {
		ns := action.GetNamespace()
		obj, err := tracker.Get(action.GetResource(), ns, name)
		if err != nil {
			return nil, err
		}
		next++
		accessor, err := meta.Accessor(obj)
		if err != nil {
			return nil, err
		}
		accessor.SetResourceVersion(strconv.Itoa(next))
		if err := tracker.Update(action.GetResource(), obj, ns); err != nil {
			return nil, err
		}
		return obj, nil
	}
	conflict := func(action k8stesting.Action, name, want, have string) error {
		return apierrors.NewConflict(action.GetResource().GroupResource(), name,
			fmt.Errorf("the object has been modified: resourceVersion %s, stored %s", want, have))
	}
	stored := func(action k8stesting.Action, name string) (string, error) {
		obj, err := tracker.Get(action.GetResource(), action.GetNamespace(), name)
		if err != nil {
			return "", err
		}
		accessor, err := meta.Accessor(obj)
		if err != nil {
			return "", err
		}
		return accessor.GetResourceVersion(), nil
	}
	f.PrependReactor("*", resource, func(action k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		var name, want string
		// By verb: an UpdateAction also satisfies CreateAction's method set.
		switch a := action.(type) {
		case k8stesting.PatchAction:
			name = a.GetName()
			var p struct {
				Metadata struct {
					ResourceVersion string `json:"resourceVersion"`
				} `json:"metadata"`
			}
			_ = json.Unmarshal(a.GetPatch(), &p) // JSON patches carry no precondition here
			want = p.Metadata.ResourceVersion
		case k8stesting.CreateAction: // create and update
			if action.GetVerb() != "create" && action.GetVerb() != "update" {
				return false, nil, nil
			}
			accessor, err := meta.Accessor(a.GetObject())
			if err != nil {
				return true, nil, err
			}
			name = accessor.GetName()
			if action.GetVerb() == "update" {
				want = accessor.GetResourceVersion()
			}
		default:
			return false, nil, nil // reads and deletes: the default reactors
		}
		if want != "" {
			have, err := stored(action, name)
			if err != nil {
				return true, nil, err
			}
			if have != want {
				return true, nil, conflict(action, name, want, have)
			}
		}
		if _, _, err := k8stesting.ObjectReaction(tracker)(action); err != nil {
			return true, nil, err
		}
		obj, err := bump(action, name)
		return true, obj, err
	})
}
