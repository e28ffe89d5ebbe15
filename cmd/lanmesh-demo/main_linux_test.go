package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/testbed"
)

// TestDemoOnce runs the whole demo as `make demo` does, torn down at once:
// it must exit 0 (all steps passed) and leave no namespace behind.
func TestDemoOnce(t *testing.T) {
	testbed.SkipUnlessRoot(t)
	if code := run(true, testbed.NATNone, testbed.NATNone); code != 0 {
		t.Fatalf("demo exited %d", code)
	}
	ents, _ := os.ReadDir("/var/run/netns")
	mine := fmt.Sprintf("lmtb%dx", os.Getpid())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), mine) {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
}

func TestKind(t *testing.T) {
	for in, want := range map[string]testbed.NATKind{"none": testbed.NATNone, "": testbed.NATNone, "hard": testbed.NATHard,
		"restricted-accept": testbed.NATRestrictedAccept} {
		if got, err := testbed.ParseNATKind(in); err != nil || got != want {
			t.Errorf("ParseNATKind(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := testbed.ParseNATKind("fullcone"); err == nil || !strings.Contains(err.Error(), "restricted-reject") {
		t.Errorf("ParseNATKind(fullcone): error %v, want one listing the kinds", err)
	}
}
