package engine

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/nstest"
)

// The namespace helpers live in internal/nstest; these names keep the
// tests short.
var (
	requireRoot = nstest.RequireRoot
	run         = nstest.Run
	inNS        = nstest.Do
)

// newNS makes a namespace named lmdp-<pid>-<n>, deleted when the test ends.
func newNS(t *testing.T) string {
	t.Helper()
	return nstest.New(t, "lmdp")
}

func try(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// link joins two namespaces with a veth pair addressed a and b (CIDR).
func link(t *testing.T, nsA, ifA, a, nsB, ifB, b string) {
	t.Helper()
	run(t, "ip", "-n", nsA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", nsB)
	run(t, "ip", "-n", nsA, "addr", "add", a, "dev", ifA)
	run(t, "ip", "-n", nsB, "addr", "add", b, "dev", ifB)
	run(t, "ip", "-n", nsA, "link", "set", ifA, "up")
	run(t, "ip", "-n", nsB, "link", "set", ifB, "up")
}

// startEngine runs an engine inside ns, closed when the test ends.
func startEngine(t *testing.T, ns string, opts Options) Engine {
	t.Helper()
	return startEngineLog(t, ns, opts, testLogger(t))
}

func startEngineLog(t *testing.T, ns string, opts Options, log *slog.Logger) Engine {
	t.Helper()
	var e Engine
	var err error
	if nerr := inNS(ns, func() { e, err = New(opts, log) }); nerr != nil {
		t.Fatal(nerr)
	}
	if err != nil {
		t.Fatalf("engine in %s: %v", ns, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
