package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseArches(t *testing.T) {
	as, err := parseArches("amd64, mipsle")
	if err != nil || len(as) != 2 || as[0] != "amd64" || as[1] != "mipsle" {
		t.Fatalf("parseArches = %v, %v", as, err)
	}
	for _, bad := range []string{"", "arm", "amd64,x"} {
		if _, err := parseArches(bad); err == nil {
			t.Errorf("parseArches(%q) accepted", bad)
		}
	}
}

// The host benchmark and the VM one each rewrite only their part of
// throughput.md.
func TestWriteThroughputKeepsTheOtherPart(t *testing.T) {
	out := t.TempDir()
	const begin = "<!-- lanmesh-bench -only vm: begin (the host throughput run keeps this section) -->"
	const end = "<!-- lanmesh-bench -only vm: end -->"
	read := func() string {
		b, err := os.ReadFile(filepath.Join(out, "throughput.md"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if err := writeThroughput(out, []byte("# host v1\n"), nil); err != nil {
		t.Fatal(err)
	}
	if err := writeThroughput(out, nil, []byte(begin+"\nvm v1\n"+end+"\n")); err != nil {
		t.Fatal(err)
	}
	if s := read(); !strings.Contains(s, "host v1") || !strings.Contains(s, "vm v1") {
		t.Fatalf("after vm:\n%s", s)
	}
	if err := writeThroughput(out, []byte("# host v2\n"), nil); err != nil {
		t.Fatal(err)
	}
	if s := read(); strings.Contains(s, "host v1") || !strings.Contains(s, "host v2") || !strings.Contains(s, "vm v1") {
		t.Fatalf("after host:\n%s", s)
	}
	if err := writeThroughput(out, nil, []byte(begin+"\nvm v2\n"+end+"\n")); err != nil {
		t.Fatal(err)
	}
	if s := read(); strings.Contains(s, "vm v1") || !strings.Contains(s, "vm v2") || !strings.Contains(s, "host v2") || strings.Count(s, begin) != 1 {
		t.Fatalf("after vm again:\n%s", s)
	}
}
