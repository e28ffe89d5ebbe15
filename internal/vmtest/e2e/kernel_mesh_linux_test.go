package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
	"github.com/lanmesh/lanmesh/internal/vmtest"
)

// Addresses of TestKernelMesh's two guest nodes: vm-r behind a
// port-restricted NAT (guest eth0, the guest's own namespace), vm-h behind
// a hard (symmetric) NAT (guest eth1, moved into the guest namespace h).
const (
	meshNATRWAN = "198.18.3.2"
	meshNATHWAN = "198.18.4.2"
	meshRGW     = "198.19.103.1"
	meshRIP     = "198.19.103.2"
	meshHGW     = "198.19.104.1"
	meshHIP     = "198.19.104.2"

	ipr = "/usr/lib/lmvm/ip" // iproute2's ip in the guest
)

// kernelNode is one `lanmesh agent --backend kernel` in the guest.
type kernelNode struct {
	name string
	ns   string // guest namespace ("" for the guest's own)
	sock string
	vm   *vmtest.VM
}

// in prefixes a guest command so it runs in the node's namespace.
func (n *kernelNode) in(cmd string) string {
	if n.ns == "" {
		return cmd
	}
	return ipr + " netns exec " + n.ns + " " + cmd
}

func (n *kernelNode) start(t *testing.T, ctx context.Context) {
	t.Helper()
	// DNS on port 53 so busybox nslookup can ask it; the agent's pid in
	// /run/<name>.pid (ip netns exec execs the agent: same pid).
	cmd := fmt.Sprintf("mkdir -p /var/lib/%[1]s\nLANMESH_DNS_LISTEN=127.0.0.1:53 setsid %[2]s lanmesh agent --backend kernel --state-dir /var/lib/%[1]s --socket %[3]s --log-level debug </dev/null >>/tmp/%[1]s.log 2>&1 & echo $! >/run/%[1]s.pid",
		n.name, strings.TrimSuffix(n.in(""), " "), n.sock)
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := n.vm.Run(cctx, cmd); err != nil {
		t.Fatal(err)
	}
	n.wait(t, ctx, "its local API", func(*testbed.Status) bool { return true })
}

// wait polls the node's status --json until ok accepts it (3 minutes:
// TCG on a loaded machine). A status that does not answer in 30 s fails
// the test with the agent's goroutines.
func (n *kernelNode) wait(t *testing.T, ctx context.Context, what string, ok func(*testbed.Status) bool) *testbed.Status {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, rc, err := n.vm.Exec(cctx, "lanmesh --socket "+n.sock+" status --json")
		cancel()
		if err != nil && !n.vm.Exited() && time.Now().Before(deadline) && ctx.Err() == nil {
			// One slow answer is not a verdict: under TCG on a loaded
			// host a status call has once taken over 45 s while the agent
			// was idle (CI at 6174dea). Keep polling; the agent's health
			// is judged by what status says, and a dead QEMU or the
			// deadline still fails below.
			t.Logf("%s: status --json while waiting for %s: %v; polling again", n.name, what, firstLine(err))
			continue
		}
		if err != nil {
			dump, _ := n.vm.Run(ctx, fmt.Sprintf("kill -QUIT $(cat /run/%[1]s.pid); sleep 2; tail -c 60000 /tmp/%[1]s.log", n.name))
			t.Fatalf("%s: status --json while waiting for %s: %v\nagent log with goroutines:\n%s", n.name, what, err, dump)
		}
		if rc == 0 {
			if st, err := testbed.ParseStatus([]byte(out)); err == nil && ok(st) {
				return st
			}
		}
		last = out
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s after 3 minutes; last status:\n%s", n.name, what, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (n *kernelNode) status(t *testing.T, ctx context.Context) *testbed.Status {
	t.Helper()
	return n.wait(t, ctx, "a status", func(*testbed.Status) bool { return true })
}

// ping pings dst from the node over the mesh, retrying for up to a minute
// (a new peer needs its handshake first).
func (n *kernelNode) ping(t *testing.T, ctx context.Context, dst string) {
	t.Helper()
	var out string
	var rc int
	var err error
	for i := 0; i < 12; i++ {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		out, rc, err = n.vm.Exec(cctx, n.in("ping -c 2 -W 3 "+dst))
		cancel()
		if err == nil && rc == 0 {
			return
		}
	}
	t.Fatalf("%s -> %s over the mesh: rc %d, %v:\n%s", n.name, dst, rc, err, out)
}

// pathTo is the path the node's status gives for peer (empty when absent).
func pathTo(st *testbed.Status, peer string) string {
	if p := st.Peer(peer); p != nil {
		return p.Path
	}
	return ""
}

// TestKernelMesh is issue 17's acceptance 1, 2 and 4 in one boot of the
// x86-64 VM, with two kernel-backend nodes in it: vm-r behind a
// port-restricted NAT and vm-h behind a symmetric NAT (each NAT box is a
// testbed namespace; the guest has a NIC behind each and keeps vm-h in a
// namespace of its own), and userspace nodes router-a and router-b on the
// internet. Subtests run in order and build on each other:
//
//   - paths: every pair pings over the mesh; vm-r and vm-h each reach
//     router-a directly (the NAT matrix's restricted-none and hard-none),
//     and vm-r and vm-h stay relayed (hard-restricted), per status --json.
//   - acl: a policy allowing TCP 8080 and ICMP: 8080 on vm-r connects from
//     router-a and vm-h, TCP 22 (listening) gets no answer.
//   - dns: vm-r's mesh DNS answers router-a's and vm-h's names.
//   - udp-blocked: with all UDP dropped in vm-r's NAT box, vm-r's
//     traffic to router-a goes over the relay; unblocked, it goes direct.
//   - revoke-then-join: deleting router-b removes it from vm-r's kernel
//     device (wg show) within 1 s; a node joining afterwards is reached
//     from both kernel nodes, and their status keeps answering.
//   - crash-restart: vm-r killed with SIGKILL and started again has the
//     same nftables ruleset (no duplicate), the same kernel peers and
//     reaches them.
//   - stop-cleans-up: vm-h stopped with SIGTERM leaves no link, no mesh
//     route and no nftables table in its namespace.
func TestKernelMesh(t *testing.T) {
	vmtest.Require(t, vmtest.AMD64)
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	s := testbed.NewStandard(t, testbed.StandardOptions{})
	coord, err := testbed.StartCoord(ctx, s.Coord, s.CoordAddr())
	if err != nil {
		t.Fatal(err)
	}
	policy, err := filepath.Abs(filepath.Join("testdata", "kernel-acl.hujson"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := coord.Admin(ctx, "policy", "set", policy); err != nil {
		t.Fatal(err)
	}
	newKey := func() string {
		t.Helper()
		k, err := coord.CreateKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}

	// Two NAT boxes on the internet; their LAN sides are bridges in
	// vmhost, where QEMU runs with a tap on each.
	vmh, err := s.AddHost("vmhost")
	if err != nil {
		t.Fatal(err)
	}
	for _, nb := range []struct {
		name, wan, gw, bridge, tap string
		kind                       testbed.NATKind
	}{
		{"nat-r", meshNATRWAN, meshRGW, "brr", "tapr", testbed.NATRestricted},
		{"nat-h", meshNATHWAN, meshHGW, "brh", "taph", testbed.NATHard},
	} {
		box, err := s.AddNATBox(nb.name, nb.kind)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Internet.Attach(box, "wan0", nb.wan+"/17"); err != nil {
			t.Fatal(err)
		}
		if err := box.AddRoute("default", testbed.InternetGW); err != nil {
			t.Fatal(err)
		}
		seg, err := s.AddSegment(vmh, nb.bridge)
		if err != nil {
			t.Fatal(err)
		}
		if err := seg.Attach(box, "lan0", nb.gw+"/24"); err != nil {
			t.Fatal(err)
		}
		if err := seg.AttachTap(nb.tap); err != nil {
			t.Fatal(err)
		}
	}
	natR := s.Host("nat-r")

	bin, err := vmtest.RouterBinary(ctx, vmtest.AMD64)
	if err != nil {
		t.Fatal(err)
	}
	files := hostTools(t, "wg", "nft", "ip", "conntrack")
	// busybox installs its own ip (no netns) over /usr/bin/ip: iproute2's
	// is /usr/lib/lmvm/ip in the guest (its name must stay "ip": iproute2
	// reads "ipr" as "ip route").
	files[ipr] = files["/usr/bin/ip"]
	delete(files, "/usr/bin/ip")
	// Keys travel as files, never on a command line (S11).
	keys := map[string]string{"vm-r": newKey(), "vm-h": newKey()}
	for n, k := range keys {
		files["/etc/lanmesh/"+n+".key"] = vmtest.File{Data: []byte(k + "\n"), Mode: 0o600}
	}
	tBoot := time.Now()
	vm, err := vmtest.Boot(ctx, vmtest.Options{Name: "vm", Arch: vmtest.AMD64, Host: vmh, Tap: "tapr", MoreTaps: []string{"taph"},
		Modules: append(slices.Clone(agentModules), "nf_conntrack_netlink"), Lanmesh: bin, Files: files, MemMiB: 384})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	t.Logf("VM booted in %v", time.Since(tBoot).Round(time.Millisecond))
	run := func(script string) string {
		t.Helper()
		// No guest command of this test takes 2 minutes: a hang fails.
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		out, err := vm.Run(cctx, script)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	defer func() {
		if t.Failed() {
			for _, n := range []string{"vm-r", "vm-h"} {
				log, _ := vm.Run(context.Background(), "tail -c 40000 /tmp/"+n+".log")
				t.Logf("%s agent log (tail):\n%s", n, log)
			}
		}
	}()
	// eth0 (the first NIC) is behind nat-r, eth1 behind nat-h.
	run(fmt.Sprintf(`set -e
ip addr add %s/24 dev eth0; ip link set eth0 up; ip route add default via %s
mkdir -p /run/netns; /usr/lib/lmvm/ip netns add h; /usr/lib/lmvm/ip link set eth1 netns h
/usr/lib/lmvm/ip -n h link set lo up; /usr/lib/lmvm/ip -n h addr add %s/24 dev eth1; /usr/lib/lmvm/ip -n h link set eth1 up; /usr/lib/lmvm/ip -n h route add default via %s
ping -c 1 -W 5 %s; /usr/lib/lmvm/ip netns exec h ping -c 1 -W 5 %s`, meshRIP, meshRGW, meshHIP, meshHGW, meshRGW, meshHGW))

	vr := &kernelNode{name: "vm-r", sock: "/run/vm-r.sock", vm: vm}
	vh := &kernelNode{name: "vm-h", ns: "h", sock: "/run/vm-h.sock", vm: vm}
	for _, n := range []*kernelNode{vr, vh} {
		n.start(t, ctx)
		run(fmt.Sprintf("lanmesh --socket %s up --login-server %s --auth-key file:/etc/lanmesh/%s.key --hostname %s --timeout 90s",
			n.sock, coord.URL, n.name, n.name))
	}
	agents := map[string]*testbed.Agent{}
	for _, h := range []struct {
		host *testbed.Host
		name string
	}{{s.RouterA, "router-a"}, {s.RouterB, "router-b"}} {
		a, err := testbed.StartAgent(ctx, h.host, h.name, "--backend", "userspace")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Up(ctx, coord, newKey()); err != nil {
			t.Fatal(err)
		}
		agents[h.name] = a
	}
	ra := agents["router-a"]
	all := func(st *testbed.Status) bool {
		return st.Peer("router-a") != nil && st.Peer("router-b") != nil && (st.Peer("vm-r") != nil || st.Peer("vm-h") != nil)
	}
	str := vr.wait(t, ctx, "all three peers", all)
	sth := vh.wait(t, ctx, "all three peers", all)
	for _, st := range []*testbed.Status{str, sth} {
		if st.WireGuard.Backend != "kernel" {
			t.Fatalf("%s: backend %q (%s), want kernel", st.Self.Name, st.WireGuard.Backend, st.WireGuard.Reason)
		}
	}
	ip := map[string]string{"vm-r": str.Self.IPv4(), "vm-h": sth.Self.IPv4(),
		"router-a": str.Peer("router-a").IPv4(), "router-b": str.Peer("router-b").IPv4()}
	t.Logf("mesh addresses %v; joined %v after start", ip, time.Since(t0).Round(time.Second))

	direct := func(peer string) func(*testbed.Status) bool {
		return func(st *testbed.Status) bool { return strings.HasPrefix(pathTo(st, peer), "direct ") }
	}
	ok := t.Run("paths", func(t *testing.T) {
		t1 := time.Now()
		vr.ping(t, ctx, ip["router-a"])
		vh.ping(t, ctx, ip["router-a"])
		vr.ping(t, ctx, ip["vm-h"])
		vh.ping(t, ctx, ip["vm-r"])
		for _, n := range []string{"vm-r", "vm-h"} {
			if got, err := s.RouterA.Ping(ctx, ip[n], 3, 5*time.Second); err != nil || got == 0 {
				t.Fatalf("router-a -> %s over the mesh: received %d: %v", n, got, err)
			}
		}
		// restricted-none and hard-none: direct (testbed.NATPairs).
		st := vr.wait(t, ctx, "a direct path to router-a", direct("router-a"))
		t.Logf("vm-r -> router-a: %s (%v)", pathTo(st, "router-a"), time.Since(t1).Round(time.Second))
		st = vh.wait(t, ctx, "a direct path to router-a", direct("router-a"))
		t.Logf("vm-h -> router-a: %s (%v)", pathTo(st, "router-a"), time.Since(t1).Round(time.Second))
		if _, err := ra.WaitStatus(ctx, "direct paths to vm-r and vm-h", func(st *testbed.Status) bool {
			return direct("vm-r")(st) && direct("vm-h")(st)
		}); err != nil {
			t.Fatal(err)
		}
		// hard-restricted: no direct path is possible, so it must be the
		// relay, and still be after the direct pairs settled and more
		// pings (disco had every chance).
		vr.ping(t, ctx, ip["vm-h"])
		for _, n := range []*kernelNode{vr, vh} {
			other := map[string]string{"vm-r": "vm-h", "vm-h": "vm-r"}[n.name]
			p := pathTo(n.status(t, ctx), other)
			if !strings.HasPrefix(p, "relay ") {
				t.Errorf("%s -> %s: path %q, want the relay (symmetric vs port-restricted NAT)", n.name, other, p)
			}
			t.Logf("%s -> %s: %s", n.name, other, p)
		}
		if t.Failed() {
			return
		}
		// The relayed pair carries traffic both ways.
		vh.ping(t, ctx, ip["vm-r"])

		// Regression (issue 17): the kernel speaks first on a loopback
		// flow. With every conntrack entry gone, each ping's first packet
		// is the kernel's, to the agent's loopback socket; the agent's
		// SNAT rule once masqueraded it (the link is its input
		// interface), so the agent never saw it and the peer was
		// unreachable whenever the kernel node sent first.
		run("conntrack -F")
		vr.ping(t, ctx, ip["router-a"])
		vr.ping(t, ctx, ip["vm-h"])
		out := run("conntrack -L -p udp 2>/dev/null; true")
		for _, l := range strings.Split(out, "\n") {
			// A masqueraded loopback flow answers to another address.
			if strings.Contains(l, "src=127.0.0.1") && strings.Count(l, "127.0.0.1") != 4 {
				t.Errorf("loopback flow rewritten: %s", l)
			}
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("acl", func(t *testing.T) {
		// Both ports listen on vm-r (a connection from the guest itself
		// proves it); only 8080 is allowed over the mesh.
		run("for p in 8080 22; do setsid nc -ll -p $p -e /bin/hostname </dev/null >/dev/null 2>&1 & done; sleep 1; nc -w 3 127.0.0.1 22 </dev/null")
		if r := s.RouterA.ProbeTCP(ip["vm-r"]+":8080", 5*time.Second); r.Outcome != testbed.Connected {
			t.Errorf("router-a -> vm-r:8080 (allowed): %v", r)
		}
		if r := s.RouterA.ProbeTCP(ip["vm-r"]+":22", 3*time.Second); r.Outcome != testbed.TimedOut {
			t.Errorf("router-a -> vm-r:22 (denied): %v, want no answer at all", r)
		}
		// Kernel to kernel, over the relay.
		if out, err := vm.Run(ctx, vh.in("nc -w 10 "+ip["vm-r"]+" 8080 </dev/null")); err != nil || !strings.Contains(out, "(none)") && strings.TrimSpace(out) == "" {
			t.Errorf("vm-h -> vm-r:8080 (allowed): %q, %v", out, err)
		}
		if out, rc, err := vm.Exec(ctx, vh.in("nc -w 3 "+ip["vm-r"]+" 22 </dev/null")); err != nil || rc == 0 {
			t.Errorf("vm-h -> vm-r:22 (denied) connected: rc %d, %q, %v", rc, out, err)
		}
	})

	t.Run("dns", func(t *testing.T) {
		for _, n := range []string{"router-a", "vm-h"} {
			out, err := vm.Run(ctx, "nslookup "+n+".mesh.internal 127.0.0.1")
			if err != nil || !strings.Contains(out, ip[n]) {
				t.Errorf("vm-r's mesh DNS for %s: want %s:\n%s (%v)", n, ip[n], out, err)
			}
		}
	})

	t.Run("udp-blocked", func(t *testing.T) {
		block := `table inet lmblock {
	chain blockudp {
		type filter hook forward priority -10; policy accept;
		meta l4proto udp drop
	}
}`
		if err := natR.Nft(block); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		relay := func(st *testbed.Status) bool { return strings.HasPrefix(pathTo(st, "router-a"), "relay ") }
		// Traffic keeps flowing while the path moves: the agent must
		// notice the dead direct path from its own packets.
		run(fmt.Sprintf("setsid ping -i 0.5 -c 400 %s </dev/null >/tmp/ping-a.log 2>&1 &", ip["router-a"]))
		st := vr.wait(t, ctx, "the relay to router-a with UDP blocked", relay)
		t.Logf("UDP blocked: vm-r -> router-a: %s after %v", pathTo(st, "router-a"), time.Since(t1).Round(100*time.Millisecond))
		vr.ping(t, ctx, ip["router-a"])
		if _, err := natR.Run(ctx, "nft", "delete", "table", "inet", "lmblock"); err != nil {
			t.Fatal(err)
		}
		t1 = time.Now()
		st = vr.wait(t, ctx, "a direct path to router-a with UDP allowed again", direct("router-a"))
		t.Logf("UDP allowed: vm-r -> router-a: %s after %v", pathTo(st, "router-a"), time.Since(t1).Round(100*time.Millisecond))
		vr.ping(t, ctx, ip["router-a"])
		run("kill $(pidof ping) 2>/dev/null; true")
	})

	t.Run("revoke-then-join", func(t *testing.T) {
		bKey := strings.TrimPrefix(str.Peer("router-b").Key, "nodekey:")
		if out := run("wg show lanmesh0 peers"); !strings.Contains(out, bKey) {
			t.Fatalf("router-b not in vm-r's kernel device before the delete:\n%s", out)
		}
		// The guest times the removal itself (a poll loop on wg show, its
		// /proc/uptime), so the serial channel's round trips do not count;
		// the guest's uptime is mapped to the host's clock by one round
		// trip, whose half is the error bound.
		run(fmt.Sprintf("(while wg show lanmesh0 peers | grep -q %s; do usleep 20000; done; cut -d' ' -f1 /proc/uptime >/tmp/gone) </dev/null >/dev/null 2>&1 &", bKey[:20]))
		ta := time.Now()
		up := run("cut -d' ' -f1 /proc/uptime")
		tb := time.Now()
		mid := ta.Add(tb.Sub(ta) / 2)
		guestAt := func(s string) time.Time {
			t.Helper()
			f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil {
				t.Fatalf("guest uptime %q: %v", s, err)
			}
			return time.Unix(0, 0).Add(time.Duration(f * float64(time.Second)))
		}
		u0 := guestAt(up)
		t1 := time.Now()
		res, err := coord.Admin(ctx, "nodes", "delete", "router-b")
		if err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		var gone string
		for {
			out, rc, err := vm.Exec(ctx, "cat /tmp/gone")
			if err == nil && rc == 0 && strings.TrimSpace(out) != "" {
				gone = out
				break
			}
			if time.Since(t1) > 30*time.Second {
				t.Fatalf("router-b still in vm-r's kernel device 30 s after nodes delete:\n%s", run("wg show lanmesh0 peers"))
			}
			time.Sleep(100 * time.Millisecond)
		}
		at := mid.Add(guestAt(gone).Sub(u0))
		d := at.Sub(t1)
		t.Logf("nodes delete -> gone from vm-r's kernel wg show: %d ms from starting the admin command (which ran %d ms), %d ms from its return (+- %d ms)",
			d.Milliseconds(), res.Duration.Milliseconds(), at.Sub(t2).Milliseconds(), tb.Sub(ta).Milliseconds()/2)
		// The acceptance bound is 1 s; the test fails only at 5 s so a
		// loaded CI machine does not make it flaky (the number is logged).
		if d > 5*time.Second {
			t.Errorf("revocation took %v", d)
		}
		agents["router-b"].Stop()
		// A node that joins after the revocation (a fresh identity on
		// router-b's host).
		b2, err := testbed.StartAgent(ctx, s.RouterB, "router-b2", "--backend", "userspace")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b2.Up(ctx, coord, newKey()); err != nil {
			t.Fatal(err)
		}
		st := vr.wait(t, ctx, "router-b2", func(st *testbed.Status) bool { return st.Peer("router-b2") != nil })
		ip["router-b2"] = st.Peer("router-b2").IPv4()
		vr.ping(t, ctx, ip["router-b2"])
		vh.ping(t, ctx, ip["router-b2"])
		if got, err := s.RouterB.Ping(ctx, ip["vm-r"], 3, 5*time.Second); err != nil || got == 0 {
			t.Fatalf("router-b2 -> vm-r: received %d: %v", got, err)
		}
		for _, n := range []*kernelNode{vr, vh} {
			n.wait(t, ctx, "a handshake with router-b2", func(st *testbed.Status) bool {
				p := st.Peer("router-b2")
				return p != nil && p.LastHandshake != ""
			})
		}
	})

	t.Run("crash-restart", func(t *testing.T) {
		peers := func() []string {
			ps := strings.Fields(run("wg show lanmesh0 peers"))
			slices.Sort(ps)
			return ps
		}
		// Sets' elements may come back in another order: compare sorted
		// lines.
		ruleset := func() []string {
			ls := strings.Split(run("nft list ruleset"), "\n")
			slices.Sort(ls)
			return ls
		}
		beforePeers, beforeRules := peers(), ruleset()
		beforeRoutes := run("/usr/lib/lmvm/ip route show dev lanmesh0; /usr/lib/lmvm/ip -6 route show dev lanmesh0; /usr/lib/lmvm/ip rule")
		run("kill -9 $(cat /run/vm-r.pid); sleep 1; ! kill -0 $(cat /run/vm-r.pid) 2>/dev/null && ! ps | grep -q '[s]tate-dir /var/lib/vm-r '")
		vr.start(t, ctx)
		vr.wait(t, ctx, "router-a and router-b2 with handshakes after the restart", func(st *testbed.Status) bool {
			for _, n := range []string{"router-a", "router-b2", "vm-h"} {
				if st.Peer(n) == nil {
					return false
				}
			}
			return true
		})
		vr.ping(t, ctx, ip["router-a"])
		vr.ping(t, ctx, ip["router-b2"])
		vr.ping(t, ctx, ip["vm-h"])
		if got := peers(); !slices.Equal(got, beforePeers) {
			t.Errorf("kernel peers after kill -9 and restart: %v, before: %v", got, beforePeers)
		}
		after := ruleset()
		if !slices.Equal(after, beforeRules) {
			t.Errorf("nft list ruleset after kill -9 and restart differs (sorted lines):\nbefore:\n%s\nafter:\n%s",
				strings.Join(beforeRules, "\n"), strings.Join(after, "\n"))
		}
		if n := strings.Count(strings.Join(after, "\n"), "table inet lanmesh"); n != 1 {
			t.Errorf("%d lanmesh tables after the restart, want 1", n)
		}
		if got := run("/usr/lib/lmvm/ip route show dev lanmesh0; /usr/lib/lmvm/ip -6 route show dev lanmesh0; /usr/lib/lmvm/ip rule"); got != beforeRoutes {
			t.Errorf("routes and rules after the restart:\n%s\nbefore:\n%s", got, beforeRoutes)
		}
	})

	t.Run("stop-cleans-up", func(t *testing.T) {
		if out := run(vh.in("nft list tables")); !strings.Contains(out, "lanmesh") {
			t.Fatalf("vm-h's namespace has no lanmesh table while running:\n%s", out)
		}
		run("ps | grep -q '[s]tate-dir /var/lib/vm-h '; kill -TERM $(cat /run/vm-h.pid); for i in $(seq 60); do grep -q '^State:.*[ZX]' /proc/$(cat /run/vm-h.pid)/status 2>/dev/null || ! kill -0 $(cat /run/vm-h.pid) 2>/dev/null && exit 0; sleep 0.5; done; exit 1")
		if out, rc, _ := vm.Exec(ctx, "/usr/lib/lmvm/ip -n h link show lanmesh0"); rc == 0 {
			t.Errorf("lanmesh0 still in vm-h's namespace after SIGTERM:\n%s", out)
		}
		if out := run("/usr/lib/lmvm/ip -n h route show; /usr/lib/lmvm/ip -n h -6 route show; /usr/lib/lmvm/ip -n h rule"); strings.Contains(out, "lanmesh0") || strings.Contains(out, "100.64.") {
			t.Errorf("mesh routes left in vm-h's namespace:\n%s", out)
		}
		if out := run(vh.in("nft list ruleset")); strings.TrimSpace(out) != "" {
			t.Errorf("nftables rules left in vm-h's namespace:\n%s", out)
		}
		if out := run("grep -c 'agent stopped\\|level=ERROR' /tmp/vm-h.log; true"); strings.TrimSpace(out) == "" {
			t.Logf("vm-h log has no stop line")
		}
	})
	t.Logf("TestKernelMesh wall time %v", time.Since(t0).Round(time.Second))
}

// firstLine is the first line of err's text (vmtest errors carry the
// console's tail after it).
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
