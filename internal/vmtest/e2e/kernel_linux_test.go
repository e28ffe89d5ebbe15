package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
	"github.com/lanmesh/lanmesh/internal/vmtest"
)

// The VM's NAT box sits on the internet of the standard topology.
const (
	natVMWAN = "198.18.3.2"
	vmGW     = "198.19.103.1"
	vmIP     = "198.19.103.2"
	vmSock   = "/run/lanmesh.sock"
)

// hostTools returns the host's programs (e.g. wg, nft) and the shared
// libraries they need, as initramfs files, so the x86-64 guest can run
// `wg show` and `nft list` against its own kernel (Debian ships neither
// statically linked).
func hostTools(t *testing.T, names ...string) map[string]vmtest.File {
	t.Helper()
	files := map[string]vmtest.File{}
	for _, n := range names {
		addTool(t, files, n)
	}
	return files
}

func addTool(t *testing.T, files map[string]vmtest.File, name string) {
	t.Helper()
	wg, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (scripts/deps.sh installs it): %v", name, err)
	}
	add := func(guest, host string) {
		b, err := os.ReadFile(host)
		if err != nil {
			t.Fatal(err)
		}
		// Executable: the program and its ELF interpreter.
		files[guest] = vmtest.File{Data: b, Mode: 0o755}
	}
	add("/usr/bin/"+name, wg)
	out, err := exec.Command("ldd", wg).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", wg, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "/") {
				real, err := filepath.EvalSymlinks(f)
				if err != nil {
					t.Fatal(err)
				}
				add(f, real)
			}
		}
	}
}

// TestKernelNode is issue 17's acceptance 1-2 as far as they go here: a
// node with the kernel backend in the x86-64 VM, behind an easy NAT box
// of the testbed, joins coord and talks to a userspace node in a
// namespace (pings both ways over the mesh, direct path), and deleting
// the userspace node at coord removes its peer from the VM kernel's
// WireGuard device (`wg show`) within a second (S15: revocation).
func TestKernelNode(t *testing.T) {
	vmtest.Require(t, vmtest.AMD64)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := testbed.NewStandard(t, testbed.StandardOptions{})
	coord, err := testbed.StartCoord(ctx, s.Coord, s.CoordAddr())
	if err != nil {
		t.Fatal(err)
	}
	keyB, err := coord.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keyVM, err := coord.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := testbed.StartAgent(ctx, s.RouterB, "router-b", "--backend", "userspace")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Up(ctx, coord, keyB); err != nil {
		t.Fatal(err)
	}

	nat, err := s.AddNATBox("nat-vm", testbed.NATEasy)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Internet.Attach(nat, "wan0", natVMWAN+"/17"); err != nil {
		t.Fatal(err)
	}
	if err := nat.AddRoute("default", testbed.InternetGW); err != nil {
		t.Fatal(err)
	}
	if err := nat.AddTap("lan0", vmGW+"/24"); err != nil {
		t.Fatal(err)
	}
	bin, err := vmtest.RouterBinary(ctx, vmtest.AMD64)
	if err != nil {
		t.Fatal(err)
	}
	files := hostTools(t, "wg")
	// The key travels as a file, never on a command line (S11).
	files["/etc/lanmesh/authkey"] = vmtest.File{Data: []byte(keyVM + "\n"), Mode: 0o600}
	vm, err := vmtest.Boot(ctx, vmtest.Options{Name: "vm", Arch: vmtest.AMD64, Host: nat, Tap: "lan0",
		Modules: agentModules, Lanmesh: bin, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	t.Logf("VM booted in %v", vm.BootTime.Round(time.Millisecond))
	run := func(script string) string {
		t.Helper()
		out, err := vm.Run(ctx, script)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	run(fmt.Sprintf("ip addr add %s/24 dev eth0 && ip link set eth0 up && ip route add default via %s", vmIP, vmGW))
	run("mkdir -p /var/lib/lanmesh && setsid lanmesh agent --backend kernel --state-dir /var/lib/lanmesh --socket " + vmSock +
		" --log-level info </dev/null >/tmp/agent.log 2>&1 &")
	defer func() {
		if t.Failed() {
			log, _ := vm.Run(context.Background(), "cat /tmp/agent.log")
			t.Logf("VM agent log:\n%s", log)
		}
	}()
	waitVM(ctx, t, vm, "local API", func(*testbed.Status) bool { return true })
	run(fmt.Sprintf("lanmesh --socket %s up --login-server %s --auth-key file:/etc/lanmesh/authkey --hostname vm-kernel --timeout 60s", vmSock, coord.URL))

	st := waitVM(ctx, t, vm, "router-b with a handshake", func(s *testbed.Status) bool {
		p := s.Peer("router-b")
		return p != nil && p.LastHandshake != ""
	})
	if st.WireGuard.Backend != "kernel" {
		t.Fatalf("VM backend = %q (%s), want kernel", st.WireGuard.Backend, st.WireGuard.Reason)
	}
	t.Logf("VM: wireguard %s (%s)", st.WireGuard.Backend, st.WireGuard.Reason)
	bKey := st.Peer("router-b").Key
	if out := run("wg show lanmesh0 peers"); !strings.Contains(out, strings.TrimPrefix(bKey, "nodekey:")) {
		t.Fatalf("wg show lanmesh0 peers = %q, want router-b's key %s", out, bKey)
	}
	vmMesh := st.Self.IPv4()
	bMesh := st.Peer("router-b").IPv4()
	if _, err := vm.Run(ctx, "ping -c 3 -W 5 "+bMesh); err != nil {
		t.Fatalf("VM -> router-b over the mesh: %v", err)
	}
	if n, err := s.RouterB.Ping(ctx, vmMesh, 3, 5*time.Second); err != nil || n == 0 {
		t.Fatalf("router-b -> VM over the mesh: received %d: %v", n, err)
	}
	// Easy NAT on the VM's side, router-b on the internet: direct.
	st = waitVM(ctx, t, vm, "a direct path to router-b", func(s *testbed.Status) bool {
		p := s.Peer("router-b")
		return p != nil && strings.HasPrefix(p.Path, "direct")
	})
	t.Logf("VM -> router-b path: %s", st.Peer("router-b").Path)
	if bst, err := b.Status(ctx); err == nil && bst.Peer("vm-kernel") != nil {
		t.Logf("router-b (%s) -> VM path: %s", bst.WireGuard.Backend, bst.Peer("vm-kernel").Path)
	}

	// Revocation reaches the kernel device: time from `nodes delete` to
	// the peer gone from `wg show`, an upper bound (each poll is a round
	// trip over the serial channel).
	t0 := time.Now()
	if _, err := coord.Admin(ctx, "nodes", "delete", "router-b"); err != nil {
		t.Fatal(err)
	}
	wgKey := strings.TrimPrefix(bKey, "nodekey:")
	for {
		out := run("wg show lanmesh0 peers")
		if !strings.Contains(out, wgKey) {
			break
		}
		if time.Since(t0) > 30*time.Second {
			t.Fatalf("router-b still in the VM's kernel device 30 s after nodes delete:\n%s", out)
		}
	}
	d := time.Since(t0)
	t.Logf("nodes delete -> gone from the VM kernel's wg show: %d ms (upper bound)", d.Milliseconds())
	if d > time.Second {
		t.Errorf("revocation took %v, want under 1 s", d)
	}
}

// waitVM polls the VM agent's status until ok accepts it (2 minutes: TCG).
func waitVM(ctx context.Context, t *testing.T, vm *vmtest.VM, what string, ok func(*testbed.Status) bool) *testbed.Status {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last string
	for {
		// 30 s per call: a status that hangs fails here, with the agent's
		// goroutines (SIGQUIT makes Go print them into its log).
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, rc, err := vm.Exec(cctx, "lanmesh --socket "+vmSock+" status --json")
		cancel()
		if err != nil {
			dump, _ := vm.Run(ctx, "kill -QUIT $(pidof lanmesh); sleep 2; tail -c 60000 /tmp/agent.log")
			t.Fatalf("VM: status --json while waiting for %s: %v\nagent log with goroutines:\n%s", what, err, dump)
		}
		if rc == 0 {
			if st, err := testbed.ParseStatus([]byte(out)); err == nil && ok(st) {
				return st
			}
		}
		last = out
		if time.Now().After(deadline) {
			t.Fatalf("VM: no %s after 2 minutes; last status:\n%s", what, last)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
