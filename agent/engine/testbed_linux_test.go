package engine

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"
)

// requireRoot skips tests that need network namespaces.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
}

var nsSeq atomic.Int32

// newNS makes a network namespace with a unique lmdp-<pid>- name, deleted
// when the test ends.
func newNS(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("lmdp-%d-%d", os.Getpid(), nsSeq.Add(1))
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
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

// inNS runs f on a thread inside namespace name.
func inNS(name string, f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread() // else the thread dies with the goroutine
		}
		errc <- nil
	}()
	return <-errc
}

// startEngine runs an engine inside ns, closed when the test ends.
func startEngine(t *testing.T, ns string, opts Options) Engine {
	t.Helper()
	var e Engine
	var err error
	if nerr := inNS(ns, func() { e, err = New(opts, testLogger(t)) }); nerr != nil {
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
