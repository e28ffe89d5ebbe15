package testenv

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a TB that records what the helper did instead of stopping
// the test.
type recorder struct{ skipped, failed string }

func (r *recorder) Helper()           {}
func (r *recorder) Skip(args ...any)  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatal(args ...any) { r.failed = fmt.Sprint(args...) }

func TestUnavailableFailsInCI(t *testing.T) {
	t.Setenv("CI", "true")
	var r recorder
	Unavailable(&r, "needs %s", "iperf3")
	if r.failed == "" || r.skipped != "" || !strings.Contains(r.failed, "needs iperf3") {
		t.Fatalf("under CI=true Unavailable must fail, got skipped=%q failed=%q", r.skipped, r.failed)
	}
}

func TestUnavailableSkipsOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	var r recorder
	Unavailable(&r, "needs %s", "iperf3")
	if r.skipped != "needs iperf3" || r.failed != "" {
		t.Fatalf("outside CI Unavailable must skip, got skipped=%q failed=%q", r.skipped, r.failed)
	}
}

func TestOptionalSkipsInCI(t *testing.T) {
	t.Setenv("CI", "true")
	var r recorder
	Optional(&r, "set X=1")
	if r.skipped != "set X=1" || r.failed != "" {
		t.Fatalf("Optional must skip even in CI, got skipped=%q failed=%q", r.skipped, r.failed)
	}
}

func TestRequireToolMissing(t *testing.T) {
	t.Setenv("CI", "true")
	var r recorder
	RequireTool(&r, "no-such-tool-lanmesh", "no-such-package")
	if !strings.Contains(r.failed, "apt-get install -y --no-install-recommends no-such-package") {
		t.Fatalf("failure must name the package, got %q", r.failed)
	}
}
