// Package testenv is the one place tests skip from. A test that cannot run
// here (no root, a missing tool, a kernel without a feature) calls
// Unavailable or one of its Require helpers: it skips on a developer's
// machine but fails when CI=true, so CI never passes by skipping what it
// was meant to test. A test that runs only on request (a measurement
// behind an environment variable, a long test under -short) calls Optional,
// which skips everywhere.
//
// The rawskip check (internal/lint/rawskip, run by `make lint` and the vet
// phase of `make test`) reports any t.Skip, t.Skipf or t.SkipNow outside
// this package.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
)

// TB is the part of testing.TB the helpers use.
type TB interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
}

// InCI reports whether CI=true (or any true value strconv.ParseBool knows).
func InCI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// Unavailable skips the test because something it needs is missing, or,
// under CI=true, fails it with the same reason.
func Unavailable(t TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatal(msg + " (CI=true: a test may not skip for a missing requirement; scripts/deps.sh installs the tools, CI runs as root)")
		return
	}
	t.Skip(msg)
}

// Optional skips a test that runs only on request, in CI too; reason says
// how to ask for it (for example "set LMDP_BENCH=1 to measure throughput").
func Optional(t TB, format string, args ...any) {
	t.Helper()
	t.Skip(fmt.Sprintf(format, args...))
}

// RequireRoot needs euid 0; why says for what ("network namespaces").
func RequireRoot(t TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root for %s", why)
	}
}

// RequireTool needs an executable on PATH and returns its path; pkg names
// the Debian package that provides it.
func RequireTool(t TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s not installed (apt-get install -y --no-install-recommends %s, or scripts/deps.sh)", name, pkg)
	}
	return p
}
