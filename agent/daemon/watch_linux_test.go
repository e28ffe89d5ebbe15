package daemon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// watchNetlink reports address and link changes, but not those of the
// mesh interface. Runs in a namespace of its own (never the host's).
func TestWatchNetlinkInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "needs root for a network namespace")
	}
	name := fmt.Sprintf("lmw1watch%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan struct{}, 100)
	started := make(chan error, 1)
	go func() {
		// The thread stays in the namespace and dies with the goroutine.
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err == nil {
			err = netns.Set(h)
			h.Close()
		}
		started <- err
		if err != nil {
			return
		}
		watchNetlink(ctx, "lanmesh0", func() { events <- struct{}{} })
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // subscribed
	quiet := func(what string) {
		t.Helper()
		select {
		case <-events:
			t.Fatalf("event for %s", what)
		case <-time.After(300 * time.Millisecond):
		}
	}
	ip("-n", name, "link", "add", "lanmesh0", "type", "veth", "peer", "name", "lanmesh0p")
	ip("-n", name, "addr", "add", "100.64.0.1/32", "dev", "lanmesh0")
	quiet("the mesh interface")
	ip("-n", name, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0p")
	ip("-n", name, "addr", "add", "198.18.77.1/24", "dev", "wan0")
	select {
	case <-events:
	case <-time.After(2 * time.Second):
		t.Fatal("no event for a new interface and address")
	}
}
