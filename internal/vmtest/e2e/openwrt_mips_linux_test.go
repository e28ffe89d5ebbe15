package e2e

import (
	"bytes"
	"context"
	"debug/elf"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
	"github.com/lanmesh/lanmesh/internal/vmtest"
)

// The MIPS router's site: its WAN on the internet of the standard
// topology, its LAN (eth1) on a bridge with one plain host, v1.
const (
	mipsWAN    = "198.18.3.2"
	mipsLAN    = "198.19.3.0/24"
	mipsLANIP  = "198.19.3.1"
	mipsV1IP   = "198.19.3.10"
	mipsRouter = "mips-router"
)

// TestOpenWrtMIPSRouter is the OpenWrt issue's acceptance 2 (functional
// part): a little-endian MIPS Malta VM with 128 MiB (TCG) runs the lanmesh
// binary taken out of the mipsel_24kc .ipk that internal/opkg builds, with
// the package's files at their paths, started with the init script's
// command line and configured only from UCI files: the package's
// /etc/config/lanmesh with just join.login_server and join.hostname set
// (plus log_level info for this log), the key in the shipped
// join.auth_key_file, and an OpenWrt /etc/config/network whose "lan" is
// eth1, a virtio NIC on a bridge with a plain host v1. The router joins
// coord, advertises its lan (resolved from the network file) and, with the
// shipped defaults (accept routes, SNAT into the LAN), carries real TCP:
// a1 behind router-a (a namespace router running the host's lanmesh)
// reaches v1 on the VM's LAN, and v1 reaches a1. Boot and join times are
// logged: TCG on a loaded 2-core machine is slow.
func TestOpenWrtMIPSRouter(t *testing.T) {
	vmtest.Require(t, vmtest.MIPSLE)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 16*time.Minute)
	defer cancel()
	s := testbed.NewStandard(t, testbed.StandardOptions{})
	coord, err := testbed.StartCoord(ctx, s.Coord, s.CoordAddr())
	if err != nil {
		t.Fatal(err)
	}
	keyA, err := coord.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keyV, err := coord.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, err := testbed.StartAgent(ctx, s.RouterA, "router-a")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := a.Up(ctx, coord, keyA, "--advertise-routes", testbed.LANA, "--accept-routes"); err != nil {
		t.Fatalf("router-a up: %v %s", err, r.Stderr)
	}

	// The VM's ports: wan on the internet bridge, lan on a bridge of its
	// own (both in the inet namespace, where QEMU runs) with v1 on it.
	if err := s.Internet.AttachTap("wan-v"); err != nil {
		t.Fatal(err)
	}
	lanSeg, err := s.AddSegment(s.Inet, "br-v")
	if err != nil {
		t.Fatal(err)
	}
	if err := lanSeg.AttachTap("lan-v"); err != nil {
		t.Fatal(err)
	}
	v1, err := s.AddHost("v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := lanSeg.Attach(v1, "eth0", mipsV1IP+"/24"); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddRoute("default", mipsLANIP); err != nil {
		t.Fatal(err)
	}

	t0 := time.Now()
	ipk, pkg, err := vmtest.OpenWrtPackage(ctx, vmtest.MIPSLE)
	if err != nil {
		t.Fatal(err)
	}
	bin := pkg.Files["/usr/sbin/lanmesh"].Data
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("/usr/sbin/lanmesh in %s: %v", ipk, err)
	}
	if f.Machine != elf.EM_MIPS || f.ByteOrder.String() != "LittleEndian" || pkg.Field("Architecture") != "mipsel_24kc" {
		t.Fatalf("%s: Architecture %s, binary %v %v: want mipsel_24kc, little-endian MIPS", ipk, pkg.Field("Architecture"), f.Machine, f.ByteOrder)
	}
	t.Logf("package %s (%d-byte binary) ready in %v", ipk, len(bin), time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	r, err := vmtest.BootOpenWrt(ctx, vmtest.OpenWrtOptions{
		Name: "mips", Arch: vmtest.MIPSLE, Host: s.Inet, WANTap: "wan-v", LANTap: "lan-v",
		WAN: mipsWAN + "/17", Gateway: testbed.InternetGW, LAN: mipsLANIP + "/24",
		UCI: map[string]string{
			"join.login_server": coord.URL,
			"join.hostname":     mipsRouter,
			"main.log_level":    "info",
		},
		AuthKey: keyV,
		// A loaded 2-core machine has seen the kernel need minutes.
		BootTimeout: 8 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	boot := time.Since(t0)
	t.Logf("MIPS VM (%s, 128 MiB, TCG) booted in %v (QEMU start to command channel %v); agent command from the init script: %q",
		r.Kernel.Package, boot.Round(time.Millisecond), r.BootTime.Round(time.Millisecond), r.Command)
	if m := r.Command; len(m) < 3 || m[0] != "/usr/sbin/lanmesh" || !slices.Contains(m, "--uci") {
		t.Fatalf("init script's command %q: want /usr/sbin/lanmesh agent --uci ...", m)
	}
	if out, err := r.Run(ctx, "uname -m; cat /proc/meminfo | head -1"); err != nil || !strings.Contains(out, "mips") {
		t.Fatalf("not a MIPS guest: %q %v", out, err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("VM agent log:\n%s", r.AgentLog(context.Background()))
		}
	}()

	t0 = time.Now()
	if err := r.StartAgent(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := r.WaitStatus(ctx, 3*time.Minute, "join from UCI advertising lan", func(st *testbed.Status) bool {
		return st.BackendState == "Running" && slices.Contains(st.Self.AdvertisedRoutes, mipsLAN)
	})
	if err != nil {
		t.Fatal(err)
	}
	join := time.Since(t0)
	t.Logf("agent start to joined (%s, %s, advertising %v from the lan of /etc/config/network): %v; wireguard %s (%s)",
		st.Self.Name, st.Self.IPv4(), st.Self.AdvertisedRoutes, join.Round(time.Millisecond), st.WireGuard.Backend, st.WireGuard.Reason)
	if st.Self.Name != mipsRouter {
		t.Errorf("VM joined as %q, want %q (join.hostname)", st.Self.Name, mipsRouter)
	}
	if _, err := v1.ServeTCP(8080, "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.A1.ServeTCP(8081, "a1"); err != nil {
		t.Fatal(err)
	}
	// Before coord approves the routes nothing carries a1's packets to
	// v1: what connects below goes through the mesh.
	if res := s.A1.ProbeTCP(mipsV1IP+":8080", 3*time.Second); res.Outcome == testbed.Connected {
		t.Fatalf("a1 reached v1 before the MIPS router's route was approved: %v", res)
	}
	for _, rt := range [][2]string{{"router-a", testbed.LANA}, {mipsRouter, mipsLAN}} {
		if res, err := coord.Admin(ctx, "routes", "approve", rt[0], rt[1]); err != nil {
			t.Fatalf("approve %s %s: %v %s", rt[0], rt[1], err, res.Stderr)
		}
	}

	t0 = time.Now()
	// The approvals reach both routers (netmap), then packets flow:
	// timed apart, so a slow run says which part was slow.
	if _, err := a.WaitStatus(ctx, "router-a sees the MIPS router's approved "+mipsLAN, func(st *testbed.Status) bool {
		p := st.Peer(mipsRouter)
		return p != nil && p.HasRoute(mipsLAN)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitStatus(ctx, 2*time.Minute, "router-a's approved route in the VM", func(st *testbed.Status) bool {
		p := st.Peer("router-a")
		return p != nil && p.HasRoute(testbed.LANA)
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("route approvals in both routers' netmaps after %v", time.Since(t0).Round(time.Millisecond))

	// a1 -> v1: across router-a, the mesh and the MIPS router's forwarding
	// into its LAN (SNAT on, the shipped default).
	t0 = time.Now()
	probe(t, s.A1, mipsV1IP+":8080", "v1", 3*time.Minute)
	t.Logf("a1 -> v1 (on the MIPS router's LAN) through the mesh: first connection %v after that", time.Since(t0).Round(time.Millisecond))
	// v1 -> a1: the MIPS router accepted router-a's route (join.accept_routes).
	t0 = time.Now()
	probe(t, v1, testbed.A1IP+":8081", "a1", 2*time.Minute)
	t.Logf("v1 -> a1 through the MIPS router: first connection %v", time.Since(t0).Round(time.Millisecond))
	if n, err := s.A1.Ping(ctx, mipsV1IP, 3, 10*time.Second); err != nil || n == 0 {
		t.Errorf("a1 ping v1: received %d: %v", n, err)
	}

	st, err = r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Peer("router-a"); p != nil {
		t.Logf("VM -> router-a: path %s, rx %d tx %d bytes", p.Path, p.RxBytes, p.TxBytes)
	}
	// Flash: /etc/lanmesh holds the key file and state.json only; the
	// netmap cache is in RAM (the shipped cache_dir).
	if out, err := r.Run(ctx, "ls /etc/lanmesh; ls /tmp/lanmesh"); err != nil {
		t.Fatal(err)
	} else if f := strings.Fields(out); !slices.Equal(f, []string{"authkey", "state.json", "netmap.json"}) {
		t.Errorf("/etc/lanmesh then /tmp/lanmesh hold %q, want authkey state.json, then netmap.json", f)
	}
	if rss, err := r.AgentRSS(ctx); err == nil {
		t.Logf("VM agent RSS after the test traffic: %.1f MiB (bench/results/router.md has the measured bench)", float64(rss)/(1<<20))
	}
	t.Logf("wall time: boot %v, join %v, whole test %v", boot.Round(time.Second), join.Round(time.Second), time.Since(start).Round(time.Second))
}

// probe connects from h to addr until the banner comes back (within).
func probe(t *testing.T, h *testbed.Host, addr, banner string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		res := h.ProbeTCP(addr, 5*time.Second)
		if res.Outcome == testbed.Connected && res.Banner == banner {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s -> %s: %v after %v", h.Name, addr, res, within)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
