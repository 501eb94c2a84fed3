package checkpoint

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/netplug/netplug/pkg/attachment"
)

func TestStoreRoundTrip(t *testing.T) {
	s, err := New(filepath.Join(t.TempDir(), "cp"))
	if err != nil {
		t.Fatal(err)
	}
	e := Entry{PodNamespace: "ns", PodName: "p", PodUID: "uid-1", SandboxID: "sb", NetNS: "/run/netns/x",
		Namespace: "ns", Network: "br", Interface: "net2", Config: json.RawMessage(`{"type":"bridge"}`),
		Attributes: attachment.Attributes{IPs: []string{"10.0.0.2/24"}, CNIArgs: map[string]interface{}{"a": "b"}}}
	e1 := e
	e1.Interface = "net1"
	for _, x := range []Entry{e, e1, {PodUID: "uid-2", Interface: "eth1"}} {
		if err := s.Save(x); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.List("uid-1")
	if err != nil || len(got) != 2 || got[0].Interface != "net1" || got[1].Interface != "net2" {
		t.Fatalf("List = %+v, %v", got, err)
	}
	if string(got[1].Config) != `{"type":"bridge"}` || !got[1].Attributes.Equal(e.Attributes) || got[1].SandboxID != "sb" {
		t.Fatalf("entry not preserved: %+v", got[1])
	}
	if r := got[1].Record(); r.Interface != "net2" || r.Network != "br" || r.Namespace != "ns" {
		t.Fatalf("Record = %+v", r)
	}
	pods, err := s.Pods()
	slices.Sort(pods)
	if err != nil || !slices.Equal(pods, []string{"uid-1", "uid-2"}) {
		t.Fatalf("Pods = %v, %v", pods, err)
	}
	// Overwrite replaces.
	e.SandboxID = "sb2"
	if err := s.Save(e); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.List("uid-1"); got[1].SandboxID != "sb2" {
		t.Fatalf("overwrite lost: %+v", got[1])
	}
	for _, i := range []string{"net1", "net2", "net2"} { // deleting twice is fine
		if err := s.Delete("uid-1", i); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.List("uid-1"); err != nil || len(got) != 0 {
		t.Fatalf("after delete: %+v, %v", got, err)
	}
	if pods, _ := s.Pods(); !slices.Equal(pods, []string{"uid-2"}) {
		t.Fatalf("empty pod directory not removed: %v", pods)
	}
}

func TestStoreRejectsNamesThatEscape(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Entry{{PodUID: "../x", Interface: "net1"}, {PodUID: "u", Interface: "../../etc"}, {PodUID: "", Interface: "net1"}, {PodUID: "u/v", Interface: "a"}} {
		if err := s.Save(e); err == nil {
			t.Errorf("Save(%+v) accepted", e)
		}
	}
	if _, err := s.List(".."); err == nil {
		t.Error("List(..) accepted")
	}
	if err := s.Delete("u", "a/b"); err == nil {
		t.Error("Delete with a slash accepted")
	}
}

func TestStoreCorruptEntryIsAnError(t *testing.T) {
	dir := t.TempDir()
	s, _ := New(dir)
	if err := os.MkdirAll(filepath.Join(dir, "uid"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "uid", "net1.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List("uid"); err == nil || !strings.Contains(err.Error(), "net1.json") {
		t.Fatalf("List = %v, want an error naming the file", err)
	}
}

func TestNewFailsOnUnusableDirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(filepath.Join(f, "sub")); err == nil {
		t.Fatal("New under a file succeeded")
	}
}

// A crash between creating a Save's temporary file and renaming it leaves the file behind: the
// next start removes it, and so does deleting the pod's last entry, so no pod directory stays.
func TestTempFilesOfACrashedSaveAreRemoved(t *testing.T) {
	dir := t.TempDir()
	leftover := func(uid string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, uid), 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, uid, ".tmp-123")
		if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	crashed := leftover("uid-crashed")
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(crashed); !os.IsNotExist(err) {
		t.Fatalf("temporary file survived New: %v", err)
	}
	if pods, _ := s.Pods(); len(pods) != 0 {
		t.Fatalf("pods %v after New, want none", pods)
	}

	if err := s.Save(Entry{PodUID: "uid-1", Interface: "net1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(Entry{PodUID: "uid-1", Interface: "net2"}); err != nil {
		t.Fatal(err)
	}
	tmp := leftover("uid-1")
	if err := s.Delete("uid-1", "net1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Fatalf("temporary file removed while the pod still has entries: %v", err)
	}
	if err := s.Delete("uid-1", "net2"); err != nil {
		t.Fatal(err)
	}
	if pods, _ := s.Pods(); len(pods) != 0 {
		t.Fatalf("pods %v after deleting the last entry, want none", pods)
	}
}
