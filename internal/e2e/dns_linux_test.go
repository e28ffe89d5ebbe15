package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
)

const (
	meshDomain = "mesh.internal" // coord's default
	agentDNS   = "127.0.0.1:53535"
)

// dnsWorld is the standard mesh (default policy: one user's routers)
// with router B's LAN resolving through a real dnsmasq on router B that
// includes the file the agent writes, and router A publishing its DHCP
// leases (a1).
type dnsWorld struct {
	*testbed.Mesh
	Dnsmasq *testbed.Dnsmasq
	IPA     string // router-a's mesh IPv4
}

// agentConfig writes a YAML config for `lanmesh agent --config`.
func agentConfig(t *testing.T, w *testbed.World, name, yaml string) string {
	t.Helper()
	dir, err := w.StateDir(name + "-conf")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newDNSWorld(t *testing.T) *dnsWorld {
	t.Helper()
	testbed.SkipUnlessRoot(t)
	if _, err := testbed.FindBinaries(); err != nil {
		t.Fatalf("binaries: %v", err)
	}
	s := testbed.NewStandard(t, testbed.StandardOptions{})
	confDir, err := s.StateDir("dns-files")
	if err != nil {
		t.Fatal(err)
	}
	// A dnsmasq lease file as router A's DHCP server would keep it:
	// expiry, MAC, address, hostname, client id.
	leases := filepath.Join(confDir, "dhcp.leases")
	line := fmt.Sprintf("%d 02:00:c6:13:01:0a %s a1 01:02:00:c6:13:01:0a\n", time.Now().Add(12*time.Hour).Unix(), testbed.A1IP)
	if err := os.WriteFile(leases, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	forward := filepath.Join(confDir, "lanmesh-dnsmasq.conf")
	cfgA := agentConfig(t, s.World, "router-a", fmt.Sprintf("dns:\n  listen: %q\n  publish_leases: true\n  leases_file: %q\n", agentDNS, leases))
	cfgB := agentConfig(t, s.World, "router-b", fmt.Sprintf("dns:\n  listen: %q\n  dnsmasq_conf: %q\n", agentDNS, forward))

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	m, err := testbed.StartMeshWith(ctx, s, t.Logf, testbed.MeshOptions{
		AgentArgs: map[string][]string{"router-a": {"--config", cfgA}, "router-b": {"--config", cfgB}},
	})
	if err != nil {
		t.Fatalf("mesh: %v (logs in %s)", err, s.LogDir)
	}
	w := &dnsWorld{Mesh: m}
	if w.IPA, err = m.A.MeshIP(ctx); err != nil {
		t.Fatal(err)
	}

	// The agent writes dnsmasq's forwarding lines; the router's dnsmasq
	// includes them (on OpenWrt: its conf-dir), so it starts after them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(forward)
		if strings.Contains(string(b), "server=/"+meshDomain+"/127.0.0.1#53535") {
			t.Logf("agent wrote %s:\n%s", filepath.Base(forward), b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("router-b's agent did not write dnsmasq lines for %s to %s (has %q; log %s)", meshDomain, forward, b, m.B.Proc.LogPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if w.Dnsmasq, err = m.RouterB.StartDnsmasq(ctx, testbed.RouterBLAN, forward); err != nil {
		t.Fatal(err)
	}
	return w
}

// resolve asks router B's dnsmasq from b1, as any plain LAN host does.
func (w *dnsWorld) resolve(ctx context.Context, name string) (testbed.Answer, error) {
	return w.B1.Lookup(ctx, testbed.RouterBLAN, name, "A")
}

// waitResolves polls (every 20 ms) until name resolves to want through
// dnsmasq from b1, measured from since.
func (w *dnsWorld) waitResolves(t *testing.T, name, want string, since time.Time, limit time.Duration) time.Duration {
	t.Helper()
	var last testbed.Answer
	var lastErr error
	for time.Since(since) < limit {
		t0 := time.Now()
		last, lastErr = w.resolve(context.Background(), name)
		if lastErr == nil && last.Status == "NOERROR" && slices.Equal(last.Addrs, []string{want}) {
			return time.Since(since)
		}
		time.Sleep(20*time.Millisecond - time.Since(t0))
	}
	t.Fatalf("b1: %s did not resolve to %s through dnsmasq within %v (last: %v, %v; logs %s)", name, want, limit, last, lastErr, w.LogDir)
	return 0
}

// waitGone polls (every 20 ms) until name no longer resolves (NXDOMAIN)
// when asked of server from h, measured from since (it asks at least
// once); past limit it returns the time so far and the last answer.
// It never fails the test itself, so several can run at once.
func waitGone(h *testbed.Host, server, name string, since time.Time, limit time.Duration) (time.Duration, testbed.Answer) {
	var last testbed.Answer
	for {
		t0 := time.Now()
		a, err := h.Lookup(context.Background(), server, name, "A")
		if err == nil {
			last = a
			if a.Status == "NXDOMAIN" {
				return t0.Sub(since), a
			}
		}
		if time.Since(since) >= limit {
			return time.Since(since), last
		}
		time.Sleep(20*time.Millisecond - time.Since(t0))
	}
}

// TestMeshDNSThroughDnsmasq is acceptance 3: b1, a plain host whose only
// resolver is router B's dnsmasq (198.19.2.1), resolves router A's mesh
// name and the DHCP name of a1 behind router A, and connects to a1 by the
// resolved address; after `nodes rename router-a ra` the new names
// resolve at once and the old ones stop (both measured and printed).
func TestMeshDNSThroughDnsmasq(t *testing.T) {
	t.Parallel()
	w := newDNSWorld(t)
	ctx := context.Background()
	if _, err := w.A1.ServeTCP(8445, "a1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d := w.waitResolves(t, "router-a."+meshDomain, w.IPA, start, 15*time.Second)
	t.Logf("b1: router-a.%s -> %s via dnsmasq after %s", meshDomain, w.IPA, fmtMs(d))
	// Leases are read every 10 s and travel through coord: allow for it.
	d = w.waitResolves(t, "a1.router-a."+meshDomain, testbed.A1IP, start, 60*time.Second)
	t.Logf("b1: a1.router-a.%s -> %s via dnsmasq after %s", meshDomain, testbed.A1IP, fmtMs(d))
	fmt.Printf("DNS: DHCP name a1.router-a first resolved from b1 %d ms after the mesh was up\n", d.Milliseconds())
	a, err := w.resolve(ctx, "a1.router-a."+meshDomain)
	if err != nil || len(a.Addrs) != 1 {
		t.Fatalf("a1.router-a: %v %v", a, err)
	}
	waitConnected(t, w.B1, a.Addrs[0]+":8445", "a1", firstConnectLimit)
	t.Logf("b1 connected to a1.router-a.%s (%s) through the mesh", meshDomain, a.Addrs[0])
	if a, err := w.B.Host.Lookup(ctx, agentDNS, "router-a."+meshDomain, "A"); err == nil {
		t.Logf("router-b's agent itself answers router-a.%s: %v", meshDomain, a)
	}
	// A name nobody has is NXDOMAIN, not a timeout or SERVFAIL.
	if a, err := w.resolve(ctx, "nosuchnode."+meshDomain); err != nil || a.Status != "NXDOMAIN" {
		t.Errorf("nosuchnode.%s: %v %v; want NXDOMAIN", meshDomain, a, err)
	}
	// The new name must not exist yet (asked of the agent directly, so
	// dnsmasq's negative cache stays out of the rename measurement).
	if a, err := w.B.Host.Lookup(ctx, agentDNS, "ra."+meshDomain, "A"); err != nil || a.Status != "NXDOMAIN" {
		t.Errorf("ra.%s before the rename: %v %v; want NXDOMAIN from the agent", meshDomain, a, err)
	}

	if _, err := w.Coord.Admin(ctx, "nodes", "rename", "router-a", "ra"); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	dNew := w.waitResolves(t, "ra."+meshDomain, w.IPA, since, 10*time.Second)
	dLease := w.waitResolves(t, "a1.ra."+meshDomain, testbed.A1IP, since, 10*time.Second)
	// The old names, through dnsmasq from b1 and straight from router B's
	// agent, all polled at once: if only dnsmasq lags, its cache (the
	// agent's TTL) is the cause.
	type gone struct {
		what string
		h    *testbed.Host
		srv  string
		name string
		d    time.Duration
		last testbed.Answer
	}
	olds := []*gone{
		{what: "old router-a gone (b1 via dnsmasq)", h: w.B1, srv: testbed.RouterBLAN, name: "router-a." + meshDomain},
		{what: "old a1.router-a gone (b1 via dnsmasq)", h: w.B1, srv: testbed.RouterBLAN, name: "a1.router-a." + meshDomain},
		{what: "old router-a gone (router-b's agent)", h: w.B.Host, srv: agentDNS, name: "router-a." + meshDomain},
		{what: "old a1.router-a gone (router-b's agent)", h: w.B.Host, srv: agentDNS, name: "a1.router-a." + meshDomain},
	}
	var wg sync.WaitGroup
	for _, g := range olds {
		wg.Add(1)
		go func() { defer wg.Done(); g.d, g.last = waitGone(g.h, g.srv, g.name, since, 90*time.Second) }()
	}
	wg.Wait()
	results := []struct {
		what string
		d    time.Duration
	}{{"new name ra resolves (b1 via dnsmasq)", dNew}, {"new a1.ra resolves (b1 via dnsmasq)", dLease}}
	for _, g := range olds {
		results = append(results, struct {
			what string
			d    time.Duration
		}{g.what, g.d})
		if g.last.Status != "NXDOMAIN" {
			t.Errorf("%s still resolves %v after the rename: %v", g.name, g.d.Round(time.Second), g.last)
		}
	}
	for _, r := range results {
		t.Logf("rename: %s after %s", r.what, fmtMs(r.d))
		fmt.Printf("DNS rename: %s after %d ms\n", r.what, r.d.Milliseconds())
		if r.d >= time.Second {
			t.Errorf("rename: %s took %v, goal: at once (< 1 s)", r.what, r.d)
		}
	}
}
