package cli

import (
	"strings"
	"testing"

	"github.com/netplug/netplug/pkg/attachment"
)

func TestFormOf(t *testing.T) {
	for in, want := range map[string]Form{
		"": FormEmpty, "  ": FormEmpty, "a": FormComma, "a, ns/b@x": FormComma,
		`[{"name":"a"}]`: FormJSON, ` [ ]`: FormJSON,
	} {
		if got := FormOf(in); got != want {
			t.Errorf("FormOf(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestParseElementArg(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want Element
		bad  bool
	}{
		{arg: "br1", want: Element{Name: "br1"}},
		{arg: "br1@data0", want: Element{Name: "br1", Interface: "data0"}},
		{arg: "other/br1@data0", want: Element{Namespace: "other", Name: "br1", Interface: "data0"}},
		{arg: "", bad: true},
		{arg: "a,b", bad: true},
		{arg: `[{"name":"a"}]`, bad: true},
		{arg: "a/b/c", bad: true},
		{arg: "a@b@c", bad: true},
	} {
		got, err := ParseElementArg(tc.arg)
		if tc.bad {
			if ExitCode(err) != ExitUsage {
				t.Errorf("ParseElementArg(%q) = %+v, %v; want a usage error", tc.arg, got, err)
			}
			continue
		}
		if err != nil || got.comma() != tc.want.comma() || got.Namespace != tc.want.Namespace {
			t.Errorf("ParseElementArg(%q) = %+v, %v; want %+v", tc.arg, got, err, tc.want)
		}
	}
}

func TestAppendElement(t *testing.T) {
	static := Element{Name: "br1", Interface: "data0", IPs: []string{"10.10.0.5/24"}, MAC: "02:00:00:00:00:05"}
	for _, tc := range []struct {
		name, before string
		el           Element
		want         string
		converted    bool
	}{
		{"empty, comma-expressible", "", Element{Name: "br1"}, "br1", false},
		{"empty, needs JSON", "", static, `[{"name":"br1","interface":"data0","ips":["10.10.0.5/24"],"mac":"02:00:00:00:00:05"}]`, false},
		{"comma, one element", "a", Element{Name: "br1", Interface: "d0"}, "a, br1@d0", false},
		{"comma, separator kept", "a,other/b@x", Element{Namespace: "ns", Name: "c"}, "a,other/b@x,ns/c", false},
		{"comma, spaced separator and trailing newline kept", "a ,  b\n", Element{Name: "c"}, "a ,  b,  c\n", false},
		{"comma converted for --ip", "a, other/b@x", static,
			`[{"name":"a"},{"name":"b","namespace":"other","interface":"x"},{"name":"br1","interface":"data0","ips":["10.10.0.5/24"],"mac":"02:00:00:00:00:05"}]`, true},
		{"comma converted for cni-args", "a", Element{Name: "b", CNIArgs: map[string]any{"foo": "bar"}},
			`[{"name":"a"},{"name":"b","cni-args":{"foo":"bar"}}]`, true},
		{"json compact, others byte for byte", `[{"name":"a", "ips" : ["10.0.0.1/24"]}]`, Element{Name: "b"},
			`[{"name":"a", "ips" : ["10.0.0.1/24"]},{"name":"b"}]`, false},
		{"json indented", "[\n  {\"name\":\"a\"},\n  {\"name\":\"b\"}\n]", Element{Name: "c"},
			"[\n  {\"name\":\"a\"},\n  {\"name\":\"b\"},\n  {\"name\":\"c\"}\n]", false},
		{"json one indented element", "[\n  {\"name\":\"a\"}\n]\n", Element{Name: "c"},
			"[\n  {\"name\":\"a\"},\n  {\"name\":\"c\"}\n]\n", false},
		{"json empty list", "[ ]", Element{Name: "c"}, `[{"name":"c"} ]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, converted, err := AppendElement(tc.before, tc.el)
			if err != nil || got != tc.want || converted != tc.converted {
				t.Fatalf("AppendElement(%q) = %q, %t, %v\nwant %q, %t", tc.before, got, converted, err, tc.want, tc.converted)
			}
			// netplug reads the old elements exactly as before, plus the new one.
			old, err1 := attachment.ParseSelection(tc.before, "ns")
			sel, err2 := attachment.ParseSelection(got, "ns")
			if err1 != nil || err2 != nil || len(sel.Attachments) != len(old.Attachments)+1 {
				t.Fatalf("parse before %v / after %v: %d -> %d elements", err1, err2, len(old.Attachments), len(sel.Attachments))
			}
			for i, a := range old.Attachments {
				if b := sel.Attachments[i]; a.Key() != b.Key() || !a.Attributes.Equal(b.Attributes) {
					t.Errorf("element %d changed from %+v to %+v", i, a, b)
				}
			}
		})
	}
}

func TestRemoveElement(t *testing.T) {
	for _, tc := range []struct {
		before string
		index  int
		want   string
	}{
		{"a, b, c", 0, "b, c"},
		{"a, b, c", 1, "a, c"},
		{"a, b, c", 2, "a, b"},
		{"a", 0, ""},
		{`[{"name":"a"}, {"name":"b"}, {"name":"c"}]`, 0, `[{"name":"b"}, {"name":"c"}]`},
		{`[{"name":"a"}, {"name":"b"}, {"name":"c"}]`, 1, `[{"name":"a"}, {"name":"c"}]`},
		{`[{"name":"a"}, {"name":"b"}, {"name":"c"}]`, 2, `[{"name":"a"}, {"name":"b"}]`},
		{"[\n  {\"name\":\"a\"},\n  {\"name\":\"b\"}\n]", 1, "[\n  {\"name\":\"a\"}\n]"},
		{`[{"name":"a","cni-args":{"x":[1,2]}}]`, 0, ""},
	} {
		got, err := RemoveElement(tc.before, tc.index)
		if err != nil || got != tc.want {
			t.Errorf("RemoveElement(%q, %d) = %q, %v; want %q", tc.before, tc.index, got, err, tc.want)
		}
	}
	for _, bad := range []struct {
		before string
		index  int
	}{{"", 0}, {"a", 1}, {`[{"name":"a"}]`, 1}, {"a", -1}} {
		if got, err := RemoveElement(bad.before, bad.index); err == nil {
			t.Errorf("RemoveElement(%q, %d) = %q, want an error", bad.before, bad.index, got)
		}
	}
}

func TestCheckEdit(t *testing.T) {
	for _, tc := range []struct {
		name, before, after string
		code                int
		warnings            int
	}{
		{"fine", "a", "a, b@x", ExitOK, 0},
		{"invalid interface name", `[{"name":"a"}]`, `[{"name":"a"},{"name":"b","interface":"bad/name"}]`, ExitRefused, 0},
		{"interface name too long", "", "b@sixteen-chars-xx", ExitRefused, 0},
		{"duplicate interface", "a@x", "a@x, b@x", ExitRefused, 0},
		{"invalid network name", "a", "a, B_AD", ExitRefused, 0},
		{"invalid MAC", "", `[{"name":"a","mac":"nope"}]`, ExitRefused, 0},
		{"invalid IP", "", `[{"name":"a","ips":["300.1.1.1"]}]`, ExitRefused, 0},
		{"malformed after", "", `[{"name":"a"}`, ExitRefused, 0},
		{"null element", "", `[null]`, ExitRefused, 0},
		{"malformed before", `[{"name":"a"}`, `[{"name":"a"}, {"name":"b"}]`, ExitRefused, 0},
		{"problem already there is a warning", `[{"name":"a","interface":"bad/name"}]`, `[{"name":"a","interface":"bad/name"},{"name":"b"}]`, ExitOK, 1},
		{"comma form the parser rejects", "a", "a, b@bad/name", ExitRefused, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, warnings, err := CheckEdit(tc.before, tc.after, "ns")
			if ExitCode(err) != tc.code || len(warnings) != tc.warnings {
				t.Fatalf("CheckEdit(%q, %q) = %v (exit %d), warnings %q; want exit %d, %d warnings",
					tc.before, tc.after, err, ExitCode(err), warnings, tc.code, tc.warnings)
			}
		})
	}
}

func TestParseCNIArgs(t *testing.T) {
	got, err := parseCNIArgs([]string{"foo=bar", "vlan:=100", "list:=[1,\"a\"]", "eq=a=b"})
	if err != nil {
		t.Fatal(err)
	}
	if got["foo"] != "bar" || got["vlan"] != float64(100) || got["eq"] != "a=b" || len(got["list"].([]any)) != 2 {
		t.Errorf("parseCNIArgs = %#v", got)
	}
	for _, bad := range [][]string{{"novalue"}, {"=x"}, {"k:=notjson"}, {"k=1", "k=2"}} {
		if _, err := parseCNIArgs(bad); ExitCode(err) != ExitUsage {
			t.Errorf("parseCNIArgs(%q) = %v, want a usage error", bad, err)
		}
	}
	if got, err := parseCNIArgs(nil); got != nil || err != nil {
		t.Errorf("parseCNIArgs(nil) = %v, %v", got, err)
	}
	if !strings.Contains(Element{Name: "a", CNIArgs: got}.comma(), "a") {
		t.Error("comma form lost the name")
	}
}
