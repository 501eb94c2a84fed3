package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/netplug/netplug/pkg/attachment"
)

func TestStoreRoundTrip(t *testing.T) {
	s := mustOpen(t, filepath.Join(t.TempDir(), "cp"))
	defer s.Close() //nolint:errcheck // test
	e := Entry{PodNamespace: "ns", PodName: "p", PodUID: "uid-1", SandboxID: "sb", NetNS: "/run/netns/x",
		Namespace: "ns", Network: "br", Interface: "net2", Config: json.RawMessage(`{"type":"bridge"}`),
		Attributes: Attributes{IPs: []string{"10.0.0.2/24"}, CNIArgs: map[string]interface{}{"a": "b"}},
		Origin:     OriginAnnotation, Adopted: true}
	e1 := e
	e1.Interface, e1.Adopted, e1.InFlight = "net1", false, InFlightAdd
	for _, x := range []Entry{e, e1, {PodUID: "uid-2", Interface: "eth1"}} {
		if err := s.Save(x); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.List("uid-1")
	if err != nil || len(got.Entries) != 2 || len(got.Quarantined) != 0 {
		t.Fatalf("List = %+v, %v", got, err)
	}
	e.Version, e1.Version = Version, Version
	if !reflect.DeepEqual(got.Entries, []Entry{e1, e}) {
		t.Fatalf("entries not preserved:\n got %+v\nwant %+v", got.Entries, []Entry{e1, e})
	}
	if r := got.Entries[1].Record(); !reflect.DeepEqual(r, attachment.Record{Namespace: "ns", Network: "br", Interface: "net2",
		Attributes: attachment.Attributes{IPs: []string{"10.0.0.2/24"}, CNIArgs: map[string]interface{}{"a": "b"}}}) {
		t.Fatalf("Record = %+v", r)
	}
	if r := got.Entries[0].Record(); !r.Uncertain {
		t.Fatalf("Record of an entry in flight = %+v, want uncertain", r)
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
	if got, _ := s.List("uid-1"); got.Entries[1].SandboxID != "sb2" {
		t.Fatalf("overwrite lost: %+v", got.Entries[1])
	}
	for _, i := range []string{"net1", "net2", "net2"} { // deleting twice is fine
		if err := s.Delete("uid-1", i); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.List("uid-1"); err != nil || len(got.Entries) != 0 {
		t.Fatalf("after delete: %+v, %v", got, err)
	}
	if pods, _ := s.Pods(); !slices.Equal(pods, []string{"uid-2"}) {
		t.Fatalf("empty pod directory not removed: %v", pods)
	}
}

func TestAttributesConversions(t *testing.T) {
	for _, a := range []attachment.Attributes{
		{},
		{IPs: []string{"10.0.0.2/24", "fd00::2/64"}, MAC: "02:00:00:00:00:05", CNIArgs: map[string]interface{}{"a": "b", "n": 1.0}},
	} {
		disk := AttributesFrom(a)
		if back := disk.Planner(); !reflect.DeepEqual(back, a) {
			t.Errorf("Planner(AttributesFrom(%+v)) = %+v", a, back)
		}
		if len(a.IPs) > 0 { // no aliasing: the planner's slices and maps are not the store's
			disk.IPs[0] = "x"
			disk.CNIArgs["a"] = "x"
			if a.IPs[0] == "x" || a.CNIArgs["a"] == "x" {
				t.Errorf("AttributesFrom shares its argument's slices or maps")
			}
		}
	}
	// The on-disk names are the ones Multus and today's records use.
	data, err := json.Marshal(Attributes{IPs: []string{"1.2.3.4/32"}, MAC: "m", CNIArgs: map[string]interface{}{"k": "v"}})
	if err != nil || string(data) != `{"ips":["1.2.3.4/32"],"mac":"m","cni-args":{"k":"v"}}` {
		t.Fatalf("Marshal = %s, %v", data, err)
	}
}

func TestStoreRejectsNamesThatEscape(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close() //nolint:errcheck // test
	for _, e := range []Entry{
		{PodUID: "../x", Interface: "net1"}, {PodUID: "u", Interface: "../../etc"}, {PodUID: "", Interface: "net1"},
		{PodUID: "u/v", Interface: "a"}, {PodUID: "u", Interface: ""}, {PodUID: "u", Interface: ".."},
		{PodUID: "u", Interface: "."}, {PodUID: "u", Interface: "a:b"}, {PodUID: ".lock", Interface: "a"},
	} {
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
	if pods, err := s.Pods(); err != nil || len(pods) != 0 {
		t.Errorf("Pods = %v, %v after refused Saves", pods, err)
	}
}

func TestOpenFailsOnUnusableDirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), filepath.Join(f, "sub")); err == nil {
		t.Fatal("Open under a file succeeded")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, lockFile), 0o700); err != nil { // the lock cannot be opened
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "lock") {
		t.Fatalf("Open with a directory for a lock file = %v", err)
	}
}

// A crash between creating a Save's temporary file and renaming it leaves the file behind: the
// next start removes it, and so does deleting the pod's last entry, so no pod directory stays.
// Temporary files of the unversioned store (".tmp-<digits>") go the same way.
func TestTempFilesOfACrashedSaveAreRemoved(t *testing.T) {
	dir := t.TempDir()
	leftover := func(uid, name string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, uid), 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, uid, name)
		if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	crashed := []string{leftover("uid-crashed", ".tmp-123"), leftover("uid-crashed", "tmp:456"), leftover("uid-crashed-2", "tmp:7")}
	s := mustOpen(t, dir)
	defer s.Close() //nolint:errcheck // test
	for _, c := range crashed {
		if _, err := os.Stat(c); !os.IsNotExist(err) {
			t.Fatalf("temporary file %s survived Open: %v", c, err)
		}
	}
	if pods, _ := s.Pods(); len(pods) != 0 {
		t.Fatalf("pods %v after Open, want none", pods)
	}

	if err := s.Save(Entry{PodUID: "uid-1", Interface: "net1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(Entry{PodUID: "uid-1", Interface: "net2"}); err != nil {
		t.Fatal(err)
	}
	tmp := leftover("uid-1", "tmp:123")
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

// copyDir copies the fixture tree src into a fresh directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		if !strings.HasSuffix(p, ".json") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

const (
	fixturePod  = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	fixturePod2 = "0a1b2c3d-0000-4000-8000-000000000001"
)

// Checkpoints written by the store before its form was versioned (testdata/v1, made by that
// code's Save) are read as they were written, in flight or not.
func TestReadsVersion1Checkpoints(t *testing.T) {
	s := mustOpen(t, copyDir(t, "testdata/v1"))
	defer s.Close() //nolint:errcheck // test
	pods, err := s.Pods()
	slices.Sort(pods)
	if err != nil || !slices.Equal(pods, []string{fixturePod2, fixturePod}) {
		t.Fatalf("Pods = %v, %v", pods, err)
	}
	got, err := s.List(fixturePod)
	if err != nil || len(got.Quarantined) != 0 {
		t.Fatalf("List = %+v, %v", got, err)
	}
	pod := func(e Entry) Entry {
		e.Version, e.PodNamespace, e.PodName, e.PodUID, e.SandboxID, e.NetNS = 1, "default", "web-0", fixturePod, "4f1c3a2b9d8e", "/var/run/netns/cni-1234"
		return e
	}
	want := []Entry{
		pod(Entry{Namespace: "default", Network: "sec-bridge", Interface: "if-x", InFlight: InFlightDel,
			Config: json.RawMessage(`{"cniVersion":"1.0.0","name":"sec-bridge","type":"bridge"}`)}),
		pod(Entry{Namespace: "default", Network: "sec-bridge", Interface: "net1",
			Config:     json.RawMessage(`{"cniVersion":"1.0.0","name":"sec-bridge","type":"bridge","bridge":"br-sec","ipam":{"type":"host-local","subnet":"10.231.0.0/24"}}`),
			Attributes: Attributes{IPs: []string{"10.231.0.21/24"}, MAC: "02:00:00:00:00:05", CNIArgs: map[string]interface{}{"foo": "bar", "n": 1.0}}}),
		pod(Entry{Namespace: "kube-system", Network: "macvlan", Interface: "net2", InFlight: InFlightAdd,
			Config: json.RawMessage(`{"cniVersion":"1.0.0","name":"macvlan","type":"macvlan","master":"eth0"}`)}),
	}
	if !reflect.DeepEqual(got.Entries, want) {
		t.Fatalf("entries\n got %+v\nwant %+v", got.Entries, want)
	}
	if r := got.Entries[2].Record(); !r.Uncertain || r.Network != "macvlan" {
		t.Fatalf("Record of the in-flight ADD = %+v", r)
	}
	got, err = s.List(fixturePod2)
	if err != nil || len(got.Entries) != 1 || !slices.Equal(got.Entries[0].Attributes.IPs, []string{"10.231.0.30/24", "fd00::30/64"}) {
		t.Fatalf("List(%s) = %+v, %v", fixturePod2, got, err)
	}
}

func podFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		out = append(out, f.Name())
	}
	return out
}

// Saving or deleting an entry read from the version-1 form replaces or removes that file: one
// interface never has two records.
func TestVersion1CheckpointsAreReplacedAndRemoved(t *testing.T) {
	dir := copyDir(t, "testdata/v1")
	s := mustOpen(t, dir)
	defer s.Close() //nolint:errcheck // test
	podDir := filepath.Join(dir, fixturePod)
	got, _ := s.List(fixturePod)
	e := got.Entries[2] // net2, in flight for an ADD
	e.InFlight = ""
	if err := s.Save(e); err != nil {
		t.Fatal(err)
	}
	if files := podFiles(t, podDir); !slices.Equal(files, []string{"if-x.json", "if:net2.json", "net1.json"}) {
		t.Fatalf("files after Save: %v", files)
	}
	got, _ = s.List(fixturePod)
	if len(got.Entries) != 3 || got.Entries[2].Version != Version || got.Entries[2].InFlight != "" {
		t.Fatalf("entries after Save: %+v", got.Entries)
	}
	for _, iface := range []string{"net1", "net2"} {
		if err := s.Delete(fixturePod, iface); err != nil {
			t.Fatal(err)
		}
	}
	if files := podFiles(t, podDir); !slices.Equal(files, []string{"if-x.json"}) {
		t.Fatalf("files after Delete: %v", files)
	}
	// "if-x" (version 1) and "x" (version 2) are different interfaces with different files.
	if err := s.Save(Entry{PodUID: fixturePod, Interface: "x", Network: "other"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.List(fixturePod); !slices.Equal(ifaces(got.Entries), []string{"if-x", "x"}) || got.Entries[0].Network != "sec-bridge" {
		t.Fatalf("entries: %+v", got.Entries)
	}
	for _, iface := range []string{"if-x", "x"} {
		if err := s.Delete(fixturePod, iface); err != nil {
			t.Fatal(err)
		}
	}
	if files := podFiles(t, podDir); files != nil {
		t.Fatalf("pod directory left with %v", files)
	}
}

// A crash between a Save's rename and its removal of the version-1 file leaves both: the
// versioned one is the newer record.
func TestBothFormsOfOneInterfaceListTheNewer(t *testing.T) {
	dir := copyDir(t, "testdata/v1")
	s := mustOpen(t, dir)
	defer s.Close() //nolint:errcheck // test
	legacy := filepath.Join(dir, fixturePod2, "eth1.json")
	old, err := os.ReadFile(legacy)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.List(fixturePod2)
	e := got.Entries[0]
	e.InFlight = InFlightDel
	if err := s.Save(e); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(legacy, old, 0o600); err != nil { // as if the crash came before its removal
		t.Fatal(err)
	}
	if got, err := s.List(fixturePod2); err != nil || len(got.Entries) != 1 || got.Entries[0].InFlight != InFlightDel || got.Entries[0].Version != Version {
		t.Fatalf("List = %+v, %v", got, err)
	}
	if err := s.Delete(fixturePod2, "eth1"); err != nil {
		t.Fatal(err)
	}
	if files := podFiles(t, filepath.Join(dir, fixturePod2)); files != nil {
		t.Fatalf("left: %v", files)
	}
}

// Files that say a version they cannot have for their name are quarantined too.
func TestVersionMismatchIsQuarantined(t *testing.T) {
	for _, tc := range []struct{ file, content string }{
		{"if:net9.json", `{"podUID":"uid","interface":"net9"}`},               // versioned name, no version
		{"if:net9.json", `{"version":3,"podUID":"uid","interface":"net9"}`},   // a version this code does not know
		{"net9.json", `{"version":2,"podUID":"uid","interface":"net9"}`},      // unversioned name, a version
		{"if:net9.json", `{"version":2,"podUID":"uid","interface":"net8"}`},   // another interface
		{"if:net9.json", `{"version":2,"podUID":"uid","interface":"a:b"}`},    // an invalid interface
		{"if:a b.json", `{"version":2,"podUID":"uid","interface":"a b"}`},     // an invalid interface
		{"if:net9.json", `{"version":2,"podUID":"other","interface":"net9"}`}, // another pod
	} {
		t.Run(tc.file+" "+tc.content, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir)
			defer s.Close() //nolint:errcheck // test
			if err := os.Mkdir(filepath.Join(dir, "uid"), 0o700); err != nil {
				t.Fatal(err)
			}
			bad := filepath.Join(dir, "uid", tc.file)
			if err := os.WriteFile(bad, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := s.List("uid")
			if err != nil || len(got.Entries) != 0 || len(got.Quarantined) != 1 || got.Quarantined[0].File != bad || got.Quarantined[0].Err == nil {
				t.Fatalf("List = %+v, %v", got, err)
			}
			t.Log(got.Quarantined[0].Err)
			// The quarantined file keeps the pod directory (and so the pod listed) for whoever
			// looks into it; deleting an entry does not remove it.
			if err := s.Delete("uid", "net9"); err != nil {
				t.Fatal(err)
			}
			if pods, _ := s.Pods(); !slices.Equal(pods, []string{"uid"}) {
				t.Fatalf("Pods = %v", pods)
			}
		})
	}
}

func TestListReportsUnreadableFiles(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer s.Close() //nolint:errcheck // test
	if err := s.Save(Entry{PodUID: "uid", Interface: "net1"}); err != nil {
		t.Fatal(err)
	}
	// Not a corrupt entry but one that cannot be read (here, a link to a directory): an error,
	// not a quarantine, which would lose an entry to what may be a passing fault.
	if err := os.Symlink(dir, filepath.Join(dir, "uid", "if:net2.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List("uid"); err == nil || !strings.Contains(err.Error(), "reading checkpoint") {
		t.Fatalf("List of an unreadable file = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file-not-dir"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List("file-not-dir"); err == nil {
		t.Fatal("List of a pod whose directory is a file succeeded")
	}
}

func mkdirWithFile(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Every file operation that fails fails its call (the cases here fail for root too).
func TestSaveDeleteAndListFailures(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer s.Close() //nolint:errcheck // test
	if err := s.Save(Entry{PodUID: "uid", Interface: "net1", Config: json.RawMessage(`{`)}); err == nil {
		t.Error("Save of an invalid config succeeded")
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(Entry{PodUID: "file", Interface: "net1"}); err == nil {
		t.Error("Save into a pod directory that is a file succeeded")
	}
	mkdirWithFile(t, filepath.Join(dir, "uid", "if:net1.json")) // cannot be renamed over
	if err := s.Save(Entry{PodUID: "uid", Interface: "net1"}); err == nil {
		t.Error("Save over a directory succeeded")
	}
	mkdirWithFile(t, filepath.Join(dir, "uid", "net2.json")) // cannot be removed
	if err := s.Save(Entry{PodUID: "uid", Interface: "net2"}); err == nil {
		t.Error("Save whose version-1 file cannot be removed succeeded")
	}
	if err := s.Delete("uid", "net2"); err == nil {
		t.Error("Delete of a file that cannot be removed succeeded")
	}
	if err := os.WriteFile(filepath.Join(dir, "uid", "x.json"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mkdirWithFile(t, filepath.Join(dir, "uid", "x.json.corrupt")) // cannot be renamed over
	if _, err := s.List("uid"); err == nil || !strings.Contains(err.Error(), "quarantining") {
		t.Errorf("List whose quarantine fails = %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(Entry{PodUID: "uid-2", Interface: "net1"}); err == nil {
		t.Error("Save into a removed store succeeded")
	}
	if _, err := s.Pods(); err == nil {
		t.Error("Pods of a removed store succeeded")
	}
}

// Changes whose directory cannot be synced fail: their durability is the point.
func TestDirectorySyncFailuresAreErrors(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer s.Close() //nolint:errcheck // test
	if err := s.Save(Entry{PodUID: "uid", Interface: "net1"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "uid", "net9.json"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	orig := syncDir
	defer func() { syncDir = orig }()
	syncDir = func(string) error { return errors.New("sync failed") }
	if err := s.Save(Entry{PodUID: "uid", Interface: "net2"}); err == nil || !strings.Contains(err.Error(), "sync failed") {
		t.Errorf("Save = %v", err)
	}
	if err := s.Save(Entry{PodUID: "uid-new", Interface: "net2"}); err == nil || !strings.Contains(err.Error(), "sync failed") {
		t.Errorf("Save in a new pod directory = %v", err)
	}
	if err := s.Delete("uid", "net1"); err == nil || !strings.Contains(err.Error(), "sync failed") {
		t.Errorf("Delete = %v", err)
	}
	if _, err := s.List("uid"); err == nil || !strings.Contains(err.Error(), "sync failed") {
		t.Errorf("List quarantining = %v", err)
	}
	syncDir = orig
	if err := orig(filepath.Join(dir, "missing")); err == nil {
		t.Error("syncing a missing directory succeeded")
	}
}

func TestSaveAndDeleteFailures(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes everywhere")
	}
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer s.Close() //nolint:errcheck // test
	if err := s.Save(Entry{PodUID: "uid", Interface: "net1", Config: json.RawMessage(`{`)}); err == nil {
		t.Error("Save of an invalid config succeeded")
	}
	if err := s.Save(Entry{PodUID: "uid", Interface: "net1"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "uid"), 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(filepath.Join(dir, "uid"), 0o700) //nolint:errcheck // test
	if err := s.Save(Entry{PodUID: "uid", Interface: "net2"}); err == nil {
		t.Error("Save into a read-only directory succeeded")
	}
	if err := s.Delete("uid", "net1"); err == nil {
		t.Error("Delete from a read-only directory succeeded")
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700) //nolint:errcheck // test
	if err := s.Save(Entry{PodUID: "uid-2", Interface: "net2"}); err == nil {
		t.Error("Save of a new pod into a read-only directory succeeded")
	}
	_ = os.Chmod(dir, 0o700)
	_ = os.Chmod(filepath.Join(dir, "uid"), 0o700)
	if err := os.WriteFile(filepath.Join(dir, "uid", "x.json"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "uid", "x.json.corrupt"), 0o700); err != nil { // cannot be renamed over
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "uid", "x.json.corrupt", "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List("uid"); err == nil || !strings.Contains(err.Error(), "quarantining") {
		t.Errorf("List whose quarantine fails = %v", err)
	}
}

func TestClosedStoreRefusesWork(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // twice is fine
		t.Fatal(err)
	}
	if err := s.Save(Entry{PodUID: "uid", Interface: "net1"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Save = %v", err)
	}
	if err := s.Delete("uid", "net1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete = %v", err)
	}
	if _, err := s.List("uid"); !errors.Is(err, ErrClosed) {
		t.Errorf("List = %v", err)
	}
	if _, err := s.Pods(); !errors.Is(err, ErrClosed) {
		t.Errorf("Pods = %v", err)
	}
}

// syncBuffer is a log sink safe for the goroutine Open logs from.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Open says, through the context's logger, that it waits for the lock and when it has it.
func TestOpenLogsWhileWaitingForTheLock(t *testing.T) {
	dir := t.TempDir()
	first := mustOpen(t, dir)
	logs := &syncBuffer{}
	ctx := klog.NewContext(context.Background(), textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(logs))))
	done := make(chan error)
	go func() {
		s, err := Open(ctx, dir)
		if err == nil {
			err = s.Close()
		}
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "Waiting for the checkpoint lock") {
		if time.Now().After(deadline) {
			t.Fatalf("no waiting message; logs: %q", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "Acquired the checkpoint lock") {
		t.Fatalf("no acquired message; logs: %q", logs.String())
	}
}

// Many goroutines saving and deleting at once (as the controller's workers do) leave exactly
// what the last operation on each interface says.
func TestConcurrentUse(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close() //nolint:errcheck // test
	done := make(chan error)
	for w := range 8 {
		go func() {
			var err error
			for i := range 20 {
				iface := []string{"net1", "net2"}[i%2]
				if err = s.Save(Entry{PodUID: "uid", Interface: iface, Network: "w"}); err == nil {
					_, err = s.List("uid")
				}
				if err == nil && (w+i)%3 == 0 {
					err = s.Delete("uid", iface)
				}
				if err != nil {
					break
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for _, iface := range []string{"net1", "net2"} {
		if err := s.Delete("uid", iface); err != nil {
			t.Fatal(err)
		}
	}
	if pods, err := s.Pods(); err != nil || len(pods) != 0 {
		t.Fatalf("Pods = %v, %v", pods, err)
	}
}

// The unversioned store wrote ".tmp-a" as ".tmp-a.json" and then ignored it (or deleted it at
// its next start): one that is still there is read, so its interface can be released.
func TestVersion1DotFilesAreRead(t *testing.T) {
	dir := t.TempDir()
	mkdirWithFile(t, filepath.Join(dir, "uid"))
	for _, n := range []string{".tmp-a", ".x"} {
		data := `{"podUID":"uid","interface":"` + n + `","network":"br","attributes":{}}`
		if err := os.WriteFile(filepath.Join(dir, "uid", n+".json"), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := mustOpen(t, dir)
	defer s.Close() //nolint:errcheck // test
	got, err := s.List("uid")
	if err != nil || !slices.Equal(ifaces(got.Entries), []string{".tmp-a", ".x"}) || len(got.Quarantined) != 0 {
		t.Fatalf("List = %+v, %v", got, err)
	}
}
