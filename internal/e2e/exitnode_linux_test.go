package e2e

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
)

// Addresses of the exit-node world, beside the standard topology.
const (
	exitLaptopIP = "198.19.1.30" // the laptop, on router A's LAN
	exitWebIP    = "198.18.4.10" // a host on the "internet"
	exitMetaIP   = "169.254.169.254"
	exitEchoPort = "8080" // web: answers "peer=<source address>/"
	exitMgmtPort = "9000" // router B: a management service on every address
	exitLANPort  = "7000" // a1: a service on the laptop's own LAN
)

// exitStatus is the part of `lanmesh status --json` this test reads.
type exitStatus struct {
	Coord struct {
		Connected bool `json:"connected"`
	} `json:"coord"`
	ExitNode *struct {
		Name   string `json:"name"`
		Active bool   `json:"active"`
		Reason string `json:"reason"`
	} `json:"exit_node"`
}

func readExitStatus(t *testing.T, a *testbed.Agent) exitStatus {
	t.Helper()
	r, err := a.CLI(context.Background(), "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var s exitStatus
	if err := json.Unmarshal([]byte(r.Stdout), &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.Stdout)
	}
	return s
}

// routingOf is everything policy routing can change on h.
func routingOf(t *testing.T, h *testbed.Host) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "-4", "rule"}, {"ip", "-6", "rule"},
		{"ip", "-4", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
	} {
		r, err := h.Run(context.Background(), args...)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("$ " + strings.Join(args, " ") + "\n" + r.Stdout)
	}
	return b.String()
}

// tunLinkLocal matches the local-table line of the mesh TUN's
// kernel-made (random) link-local address in routingOf.
var tunLinkLocal = regexp.MustCompile(`(?m)^local fe80::[0-9a-f:]+ dev lanmesh0 table local .*\n`)

// waitNoTentative waits until h's IPv6 addresses finished DAD, so a
// snapshot of its routes does not change by itself later.
func waitNoTentative(t *testing.T, h *testbed.Host) {
	t.Helper()
	for i := 0; i < 50; i++ {
		r, err := h.Run(context.Background(), "ip", "-6", "addr", "show", "tentative")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(r.Stdout) == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: IPv6 addresses still tentative after 5 s", h.Name)
}

// waitBanner probes addr from h until the banner starts with want.
func waitBanner(t *testing.T, h *testbed.Host, addr, want string, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last testbed.ProbeResult
	for time.Now().Before(deadline) {
		last = h.ProbeTCP(addr, time.Second)
		if last.Outcome == testbed.Connected && strings.HasPrefix(last.Banner, want) {
			return last.Banner
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s -> %s: want banner %q within %v, last %v", h.Name, addr, want, limit, last)
	return ""
}

// mustFail probes addr from h and fails the test if anything answers.
func mustFail(t *testing.T, h *testbed.Host, addr, why string) {
	t.Helper()
	if r := h.ProbeTCP(addr, 2*time.Second); r.Outcome == testbed.Connected {
		t.Errorf("%s -> %s connected (%v): %s", h.Name, addr, r, why)
	} else {
		t.Logf("%s -> %s: %v (%s)", h.Name, addr, r, why)
	}
}

// TestExitNode: a laptop behind router A uses router B as its exit node.
// The internet host sees router B's WAN address; coord and the relay stay
// reachable (the agent's own sockets are marked and keep the main table);
// a policy without autogroup:internet makes router B refuse; router B
// never forwards to its own WAN, LAN or management addresses or to
// 169.254.169.254 (S17); LAN access follows --exit-node-allow-lan-access;
// and switching the exit node off, or stopping the agent, leaves the
// laptop's rules and routes exactly as before, also after a crash.
func TestExitNode(t *testing.T) {
	m := mesh(t, testbed.StandardOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// Router A is a home router: its LAN reaches the internet through NAT.
	must(nil, m.RouterA.Nft(`table ip homenat {
	chain post { type nat hook postrouting priority srcnat; policy accept; ip saddr 198.19.1.0/24 oifname "wan0" masquerade; }
}`))
	// The internet host: an echo that reports the source it sees, and a
	// stand-in for cloud metadata at 169.254.169.254 that router B
	// reaches through its WAN.
	web, err := m.AddHost("web")
	must(nil, err)
	must(nil, m.Internet.Attach(web, "eth0", exitWebIP+"/17"))
	must(nil, web.AddRoute("default", testbed.InternetGW))
	must(web.Run(ctx, "ip", "addr", "add", exitMetaIP+"/32", "dev", "eth0"))
	must(web.Start("echo", "socat", "TCP4-LISTEN:"+exitEchoPort+",reuseaddr,fork", "SYSTEM:echo peer=$SOCAT_PEERADDR/"))
	must(web.ServeTCP(80, "metadata"))
	must(m.RouterB.Run(ctx, "ip", "route", "add", exitMetaIP+"/32", "via", exitWebIP, "dev", "wan0"))
	must(m.RouterB.ServeTCP(9000, "router-b-mgmt"))
	must(m.A1.ServeTCP(7000, "lan-a1"))
	waitBanner(t, m.RouterB, exitMetaIP+":80", "metadata", 5*time.Second) // the probe target is live

	lap, err := m.AddHost("laptop")
	must(nil, err)
	must(nil, m.LANSegA.Attach(lap, "eth0", exitLaptopIP+"/24"))
	must(nil, lap.AddRoute("default", testbed.RouterALAN))
	waitBanner(t, lap, exitWebIP+":"+exitEchoPort, "peer="+testbed.WANA+"/", 5*time.Second) // plain NAT first
	waitNoTentative(t, lap)
	beforeAgent := routingOf(t, lap)
	key, err := m.Coord.CreateKey(ctx)
	must(nil, err)
	a, err := testbed.StartAgent(ctx, lap, "laptop")
	must(nil, err)
	must(a.Up(ctx, m.Coord, key))

	// Router B offers its WAN; coord approves both default routes.
	must(m.B.CLI(ctx, "up", "--advertise-exit-node"))
	must(m.Coord.Admin(ctx, "routes", "approve", "router-b", "0.0.0.0/0,::/0"))
	must(a.WaitStatus(ctx, "router-b offering 0.0.0.0/0", func(s *testbed.Status) bool {
		p := s.Peer("router-b")
		return p != nil && p.HasRoute("0.0.0.0/0") && p.HasRoute("::/0")
	}))
	// Router A accepts routes: an approved exit route must not freeze it.
	waitPing(t, m.A1, testbed.B1IP, 10*time.Second)

	r, err := a.CLI(ctx, "exit-node", "list", "--json")
	must(nil, err)
	var list struct {
		ExitNodes []struct {
			Name     string   `json:"name"`
			Routes   []string `json:"routes"`
			Selected bool     `json:"selected"`
		} `json:"exit_nodes"`
	}
	must(nil, json.Unmarshal([]byte(r.Stdout), &list))
	if len(list.ExitNodes) != 1 || list.ExitNodes[0].Name != "router-b" || list.ExitNodes[0].Selected || len(list.ExitNodes[0].Routes) != 2 {
		t.Fatalf("exit-node list --json: want router-b with 2 routes, not selected; got %s", r.Stdout)
	}
	if _, err := a.CLI(ctx, "up", "--exit-node", "router-a"); err == nil {
		t.Error("up --exit-node router-a (no exit route) was accepted")
	}

	waitNoTentative(t, lap)
	before := routingOf(t, lap)
	must(a.CLI(ctx, "up", "--exit-node", "router-b"))
	if s := readExitStatus(t, a); s.ExitNode == nil || !s.ExitNode.Active || s.ExitNode.Name != "router-b" {
		t.Fatalf("status after up --exit-node router-b: %+v", s.ExitNode)
	}
	r, err = a.CLI(ctx, "status")
	must(nil, err)
	if !strings.Contains(r.Stdout, "exit node: router-b") {
		t.Errorf("lanmesh status does not show the exit node:\n%s", r.Stdout)
	}

	// The default-like policy has no autogroup:internet: router B refuses.
	must(m.Coord.Admin(ctx, "policy", "set", policyFile("exit-no-internet.hujson")))
	must(m.B.WaitStatus(ctx, "laptop in router-b's netmap", peerIs("laptop", true)))
	bIP, err := m.B.MeshIP(ctx)
	must(nil, err)
	waitBanner(t, lap, bIP+":"+exitMgmtPort, "router-b-mgmt", 10*time.Second) // the tunnel itself works
	mustFail(t, lap, exitWebIP+":"+exitEchoPort, "policy without autogroup:internet")

	must(m.Coord.Admin(ctx, "policy", "set", policyFile("exit-internet.hujson")))
	got := waitBanner(t, lap, exitWebIP+":"+exitEchoPort, "peer=", 15*time.Second)
	if !strings.HasPrefix(got, "peer="+testbed.WANB+"/") {
		t.Fatalf("internet host saw %q, want router B's WAN %s", got, testbed.WANB)
	}
	t.Logf("through the exit node the internet host sees %s", got)

	// S17: router B's own addresses and link-local metadata stay closed.
	mustFail(t, lap, testbed.WANB+":"+exitMgmtPort, "S17: router B's WAN (management) address")
	mustFail(t, lap, testbed.RouterBLAN+":"+exitMgmtPort, "S17: router B's LAN (management) address")
	mustFail(t, lap, exitMetaIP+":80", "S17: 169.254.169.254 behind the exit node")
	// S17, loopback: a normal host never sends 127/8 into a tunnel, so the
	// probe needs help. With route_localnet on both ends and a /32 through
	// the mesh on the laptop, a packet to 127.0.0.2 reaches router B's
	// kernel, which would deliver it to a service on its loopback: only
	// router B's filter stands in the way, and it must hold until a rule
	// names that address (the positive control shows the probe works).
	must(m.RouterB.Start("lo-svc", "socat", "TCP4-LISTEN:9001,bind=127.0.0.2,reuseaddr,fork", "SYSTEM:echo router-b-loopback"))
	for _, h := range []*testbed.Host{m.RouterB, lap} {
		must(nil, h.Sysctl("net.ipv4.conf.lanmesh0.route_localnet", "1"))
	}
	must(lap.Run(ctx, "ip", "route", "add", "127.0.0.2/32", "dev", "lanmesh0", "table", "local"))
	mustFail(t, lap, "127.0.0.2:9001", "S17: router B's loopback")
	must(m.Coord.Admin(ctx, "policy", "set", policyFile("exit-loopback.hujson")))
	waitBanner(t, lap, "127.0.0.2:9001", "router-b-loopback", 10*time.Second)
	must(m.Coord.Admin(ctx, "policy", "set", policyFile("exit-internet.hujson")))
	must(lap.Run(ctx, "ip", "route", "del", "127.0.0.2/32", "dev", "lanmesh0", "table", "local"))
	must(nil, lap.Sysctl("net.ipv4.conf.lanmesh0.route_localnet", "0"))

	// Without --exit-node-allow-lan-access the laptop's LAN goes into the
	// tunnel too (and router B does not route it); with it, it stays local.
	mustFail(t, lap, testbed.A1IP+":"+exitLANPort, "LAN without --exit-node-allow-lan-access")
	must(a.CLI(ctx, "up", "--exit-node-allow-lan-access"))
	waitBanner(t, lap, testbed.A1IP+":"+exitLANPort, "lan-a1", 10*time.Second)
	waitBanner(t, lap, exitWebIP+":"+exitEchoPort, "peer="+testbed.WANB+"/", 10*time.Second)

	// Off: the routing is exactly what it was, and traffic leaves
	// through router A's NAT again.
	must(a.CLI(ctx, "up", "--exit-node="))
	if after := routingOf(t, lap); after != before {
		t.Errorf("exit node off: routing differs\nbefore:\n%s\nafter:\n%s", before, after)
	}
	waitBanner(t, lap, exitWebIP+":"+exitEchoPort, "peer="+testbed.WANA+"/", 10*time.Second)

	// Coord and the relay stay reachable: netcheck's STUN and HTTPS go
	// from marked sockets, and a restart after a crash reconnects to
	// coord with the exit node's rules already in place (cached netmap).
	must(a.CLI(ctx, "up", "--exit-node", "router-b"))
	waitBanner(t, lap, exitWebIP+":"+exitEchoPort, "peer="+testbed.WANB+"/", 10*time.Second)
	r, err = a.CLI(ctx, "netcheck", "--json")
	must(nil, err)
	var nc struct {
		UDP           bool           `json:"udp"`
		RegionLatency map[string]any `json:"region_latency"`
	}
	must(nil, json.Unmarshal([]byte(r.Stdout), &nc))
	if !nc.UDP || len(nc.RegionLatency) == 0 {
		t.Errorf("netcheck with the exit node on: %s", r.Stdout)
	}
	a.Proc.Kill()
	must(nil, a.Start(ctx))
	deadline := time.Now().Add(20 * time.Second)
	for s := readExitStatus(t, a); !s.Coord.Connected || s.ExitNode == nil || !s.ExitNode.Active; s = readExitStatus(t, a) {
		if time.Now().After(deadline) {
			t.Fatalf("after a crash and restart: coord connected %v, exit node %+v", s.Coord.Connected, s.ExitNode)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitBanner(t, lap, exitWebIP+":"+exitEchoPort, "peer="+testbed.WANB+"/", 15*time.Second)
	must(a.CLI(ctx, "up", "--exit-node="))
	// The restarted agent made a new TUN, whose kernel-made link-local
	// address is random (and sorts anywhere); everything else must match.
	waitNoTentative(t, lap)
	if after := tunLinkLocal.ReplaceAllString(routingOf(t, lap), ""); after != tunLinkLocal.ReplaceAllString(before, "") {
		t.Errorf("exit node off after a crash and restart: routing differs\nbefore:\n%s\nafter:\n%s", tunLinkLocal.ReplaceAllString(before, ""), after)
	}

	// Stopping the agent with the exit node on removes all of it.
	must(a.CLI(ctx, "up", "--exit-node", "router-b"))
	waitBanner(t, lap, exitWebIP+":"+exitEchoPort, "peer="+testbed.WANB+"/", 10*time.Second)
	a.Stop()
	if after := routingOf(t, lap); after != beforeAgent {
		t.Errorf("agent stopped: routing differs from before it started\nbefore:\n%s\nafter:\n%s", beforeAgent, after)
	}
}
