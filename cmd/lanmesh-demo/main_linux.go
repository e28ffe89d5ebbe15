package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
)

func main() {
	once := flag.Bool("once", false, "tear down right after the demo instead of waiting for Ctrl-C")
	natA := flag.String("nat-a", "", "what sits in front of router A: none, easy, restricted, restricted-reject, restricted-accept, hard, cgnat, noudp (docs/nat-traversal.md)")
	natB := flag.String("nat-b", "", "what sits in front of router B (same choices)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: lanmesh-demo [--once] [--nat-a KIND] [--nat-b KIND]\n\nBuilds a namespace world, joins two routers to a mesh and pings LAN to LAN.\n\nExample:\n  sudo lanmesh-demo --once --nat-a hard\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	a, errA := testbed.ParseNATKind(*natA)
	b, errB := testbed.ParseNATKind(*natB)
	for flagName, err := range map[string]error{"--nat-a": errA, "--nat-b": errB} {
		if err != nil {
			fmt.Fprintf(os.Stderr, "lanmesh-demo: %s: %v\n", flagName, err)
			os.Exit(2)
		}
	}
	os.Exit(run(*once, a, b))
}

// step is the name of what is running, so a failure can say where.
var step = "start"

func say(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func run(once bool, natA, natB testbed.NATKind) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "lanmesh-demo: needs root to create network namespaces")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	step = "build binaries"
	defer testbed.RemoveBuiltBinaries()
	if _, err := testbed.FindBinaries(); err != nil {
		return fail(nil, err)
	}
	say("binaries ready in %d ms", time.Since(start).Milliseconds())

	step = "build the namespace world"
	t := time.Now()
	w, err := testbed.Open(testbed.Options{})
	if err != nil {
		return fail(nil, err)
	}
	defer w.Close()
	s, err := testbed.BuildStandard(w, testbed.StandardOptions{NATA: natA, NATB: natB})
	if err != nil {
		return fail(w, err)
	}
	say("world %s built in %d ms: internet, coord %s, router-a %s (%s), router-b %s (%s), a1 %s, b1 %s",
		w.Prefix, time.Since(t).Milliseconds(), testbed.CoordIP, testbed.WANA, natName(natA), testbed.WANB, natName(natB), testbed.A1IP, testbed.B1IP)

	setup := time.Now()
	step = "bring up the mesh"
	// Router B's agent writes dnsmasq's forwarding lines for the mesh
	// domain; its LAN's dnsmasq includes them below.
	forward, cfgB, err := dnsFiles(w)
	if err != nil {
		return fail(w, err)
	}
	m, err := testbed.StartMeshWith(ctx, s, say, testbed.MeshOptions{
		AgentArgs: map[string][]string{"router-b": {"--config", cfgB}},
	})
	if err != nil {
		return fail(w, err)
	}

	step = "ping a1 -> b1 over the mesh"
	first, err := firstReply(ctx, s.A1, testbed.B1IP, 15*time.Second)
	if err != nil {
		return fail(w, err)
	}
	total := time.Since(setup)
	n, err := s.A1.Ping(ctx, testbed.B1IP, 3, 2*time.Second)
	if err != nil {
		return fail(w, err)
	}
	say("a1 -> b1 ping over the mesh: %d of 3 replies, first after %d ms", n, first.Milliseconds())
	say("set-up to first packet: %.1f s", total.Seconds())

	step = "resolve a mesh name from b1 through router-b's dnsmasq"
	if err := resolveLine(ctx, m, forward); err != nil {
		return fail(w, err)
	}

	step = "read status"
	if err := table(ctx, m); err != nil {
		return fail(w, err)
	}
	fmt.Println()
	if n != 3 {
		return fail(w, fmt.Errorf("only %d of 3 pings answered", n))
	}
	if !once {
		w.KeepLogs()
		say("logs of every process and command: %s", w.LogDir)
		say("mesh is up; try: ip netns exec %s ping %s   (Ctrl-C tears down)", s.A1.NS, testbed.B1IP)
		<-ctx.Done()
	}
	step = "tear down"
	if err := w.Close(); err != nil {
		return fail(nil, err)
	}
	if left := w.Namespaces(); len(left) > 0 {
		return fail(nil, fmt.Errorf("namespaces left behind: %v", left))
	}
	say("torn down; no namespaces left")
	return 0
}

// dnsFiles writes router B's agent config: mesh DNS on 127.0.0.1:53535
// and the dnsmasq lines to forward.
func dnsFiles(w *testbed.World) (forward, cfg string, err error) {
	dir, err := w.StateDir("demo-dns")
	if err != nil {
		return "", "", err
	}
	forward = filepath.Join(dir, "lanmesh-dnsmasq.conf")
	cfg = filepath.Join(dir, "router-b.yaml")
	yaml := fmt.Sprintf("dns:\n  listen: \"127.0.0.1:53535\"\n  dnsmasq_conf: %q\n", forward)
	return forward, cfg, os.WriteFile(cfg, []byte(yaml), 0o600)
}

// resolveLine starts a real dnsmasq on router B (its LAN's resolver,
// including the agent's forwarding lines) and resolves router-a's mesh
// name from b1, as any plain LAN host would.
func resolveLine(ctx context.Context, m *testbed.Mesh, forward string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(forward)
		if strings.Contains(string(b), "server=/") {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("router-b's agent wrote no dnsmasq lines to %s", forward)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := m.RouterB.StartDnsmasq(ctx, testbed.RouterBLAN, forward); err != nil {
		return err
	}
	ipA, err := m.A.MeshIP(ctx)
	if err != nil {
		return err
	}
	name := "router-a.mesh.internal"
	var last testbed.Answer
	for t := time.Now(); time.Since(t) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
		a, err := m.B1.Lookup(ctx, testbed.RouterBLAN, name, "A")
		if err == nil && len(a.Addrs) == 1 && a.Addrs[0] == ipA {
			say("b1 resolves %s through dnsmasq on %s: %s (%d ms)", name, testbed.RouterBLAN, a.Addrs[0], a.Took.Milliseconds())
			return nil
		}
		last = a
	}
	return fmt.Errorf("b1: %s via dnsmasq %s: %v, want %s", name, testbed.RouterBLAN, last, ipA)
}

func natName(k testbed.NATKind) string {
	if k == testbed.NATNone {
		return "no NAT"
	}
	return string(k) + " NAT"
}

// firstReply pings once per attempt until an answer comes; it returns how
// long that took from the call.
func firstReply(ctx context.Context, h *testbed.Host, dst string, limit time.Duration) (time.Duration, error) {
	t := time.Now()
	for time.Since(t) < limit {
		if n, _ := h.Ping(ctx, dst, 1, 500*time.Millisecond); n > 0 {
			return time.Since(t), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	return 0, fmt.Errorf("no reply from %s within %v", dst, limit)
}

func table(ctx context.Context, m *testbed.Mesh) error {
	sa, err := m.A.Status(ctx)
	if err != nil {
		return err
	}
	sb, err := m.B.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tMESH IPS\tROUTES\tPATH (as its peer sees it)\tHANDSHAKE")
	for _, r := range []struct{ self, peerView *testbed.Status }{{sa, sb}, {sb, sa}} {
		path, hs := "-", "-"
		if p := r.peerView.PeerByKey(r.self.Self.Key); p != nil {
			path = strings.TrimSpace(p.Path + " " + p.Endpoint)
			if p.LastHandshake != "" {
				hs = p.LastHandshake
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.self.Self.Name, strings.Join(r.self.Self.Addresses, " "),
			strings.Join(r.self.Self.Routes, " "), path, hs)
	}
	return tw.Flush()
}

func fail(w *testbed.World, err error) int {
	fmt.Fprintf(os.Stderr, "\nlanmesh-demo: FAILED at step %q: %v\n", step, err)
	if w != nil {
		w.KeepLogs()
		fmt.Fprintf(os.Stderr, "logs of every process and command: %s\n", w.LogDir)
	}
	return 1
}
