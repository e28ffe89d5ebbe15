package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/opkg"
	"github.com/lanmesh/lanmesh/internal/testbed"
	"github.com/lanmesh/lanmesh/internal/testenv"
)

// openwrtFW4 is an fw4-style ruleset for router B with the zone, the
// forwardings and the WireGuard rule firmware/openwrt's uci-defaults add
// (input and forward drop policies, lan0 as "lan", wan0 as "wan").
const openwrtFW4 = `
table inet fw4 {
	chain input {
		type filter hook input priority filter; policy drop;
		iifname "lo" accept
		ct state established,related accept
		iifname "lanmesh0" jump input_lanmesh
		iifname "lan0" jump input_lan
		iifname "wan0" jump input_wan
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lanmesh0" jump forward_lanmesh
		iifname "lan0" jump forward_lan
	}
	chain output {
		type filter hook output priority filter; policy accept;
	}
	chain input_lanmesh {
		accept
	}
	chain input_lan {
		accept
	}
	chain input_wan {
		meta l4proto icmp accept
		udp dport 41641 accept comment "Allow-lanmesh-WireGuard"
		reject
	}
	chain forward_lanmesh {
		oifname "lan0" accept
	}
	chain forward_lan {
		oifname "lanmesh0" accept
		oifname "wan0" accept
	}
}
`

// uciOption replaces "option NAME '...'" in a UCI file's text.
func uciOption(t *testing.T, text, name, value string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^(\s*option ` + regexp.QuoteMeta(name) + ` )'[^']*'`)
	if !re.MatchString(text) {
		t.Fatalf("shipped /etc/config/lanmesh has no option %s", name)
	}
	return re.ReplaceAllString(text, "${1}'"+value+"'")
}

// TestOpenWrtRouterFromUCI is the OpenWrt issue's acceptance 3: router B
// runs the agent configured only from UCI files (the package's own
// /etc/config/lanmesh, paths changed for the testbed, and a network file
// with a static "lan"), behind an fw4-style ruleset with the zone the
// uci-defaults add, with a real dnsmasq that the agent reloads when it
// writes the mesh domain's forwarding. b1, a plain LAN host, resolves
// mesh names through dnsmasq and reaches a1 behind router A. A UCI change
// plus SIGHUP (what procd sends on "uci commit") applies without taking
// the interface down.
func TestOpenWrtRouterFromUCI(t *testing.T) {
	t.Parallel()
	testbed.SkipUnlessRoot(t)
	for _, tool := range [][2]string{{"nft", "nftables"}, {"dnsmasq", "dnsmasq-base"}, {"dig", "bind9-dnsutils"}} {
		testenv.RequireTool(t, tool[0], tool[1])
	}
	if _, err := testbed.FindBinaries(); err != nil {
		t.Fatalf("binaries: %v", err)
	}
	s := testbed.NewStandard(t, testbed.StandardOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	coord, a, keyB := routerAJoined(ctx, t, s, "--accept-routes")

	// Router B: fw4 first, as on a router that booted.
	dir, err := s.StateDir("openwrt-b")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if r, err := s.RouterB.Run(ctx, "nft", "-f", write("fw4.nft", openwrtFW4, 0o644)); err != nil {
		t.Fatalf("fw4 ruleset: %v %s", err, r.Stderr)
	}
	network := write("network", `
config interface 'loopback'
	option device 'lo'
	option proto 'static'
	option ipaddr '127.0.0.1'
	option netmask '255.0.0.0'

config interface 'lan'
	option device 'lan0'
	option proto 'static'
	option ipaddr '`+testbed.RouterBLAN+`'
	option netmask '255.255.255.0'

config interface 'wan'
	option device 'wan0'
	option proto 'dhcp'
`, 0o644)
	authKey := write("authkey", keyB+"\n", 0o600)

	// What /etc/init.d/dnsmasq reload does for a changed conf-dir: dnsmasq
	// starts again with its files. The agent runs it after writing the
	// forwarding of the mesh domain.
	snippet := filepath.Join(dir, "dnsmasq.d", "lanmesh.conf")
	if err := os.MkdirAll(filepath.Dir(snippet), 0o755); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "dnsmasq.pid")
	reloads := filepath.Join(dir, "reloads")
	dnsmasqConf := write("dnsmasq.conf", fmt.Sprintf("port=53\nlisten-address=%s\nbind-interfaces\nno-resolv\nno-hosts\nuser=root\nconf-dir=%s\n", testbed.RouterBLAN, filepath.Dir(snippet)), 0o644)
	reload := write("dnsmasq-reload.sh", fmt.Sprintf(`#!/bin/sh
[ -s %[1]s ] && kill "$(cat %[1]s)" 2>/dev/null && sleep 0.3
dnsmasq --conf-file=%[2]s --pid-file=%[1]s
echo reloaded >> %[3]s
`, pidFile, dnsmasqConf, reloads), 0o755)

	shipped, err := os.ReadFile(filepath.Join("..", "..", "firmware", "openwrt", "lanmesh", "files", "lanmesh.config"))
	if err != nil {
		t.Fatal(err)
	}
	stateB, err := s.StateDir("router-b")
	if err != nil {
		t.Fatal(err)
	}
	uciText := string(shipped)
	for _, o := range [][2]string{
		{"state_dir", stateB},
		{"cache_dir", stateB},
		{"socket", filepath.Join(stateB, "lanmesh.sock")},
		{"login_server", coord.URL},
		{"auth_key_file", authKey},
		{"hostname", "router-b"},
		{"dnsmasq_conf", snippet},
		{"dnsmasq_reload", "sh " + reload},
	} {
		uciText = uciOption(t, uciText, o[0], o[1])
	}
	uciText += "\nconfig agent 'main'\n\toption network_config '" + network + "'\n\toption log_level 'info'\n"
	uciFile := write("lanmesh", uciText, 0o600)

	// Nothing but the UCI file: no lanmesh up, no flags beyond the testbed's
	// own state dir and socket (the same values as the file).
	b, err := testbed.StartAgent(ctx, s.RouterB, "router-b", "--uci", uciFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.WaitStatus(ctx, "router-b joined from UCI, advertising lan", func(st *testbed.Status) bool {
		return st.BackendState == "Running" && slices.Contains(st.Self.AdvertisedRoutes, testbed.LANB)
	})
	if err != nil {
		t.Fatalf("%v (log %s)", err, b.Proc.LogPath)
	}
	t.Logf("router-b joined from %s as %s, advertising %v", filepath.Base(uciFile), st.Self.Name, st.Self.AdvertisedRoutes)
	for _, r := range []struct{ node, lan string }{{"router-a", testbed.LANA}, {"router-b", testbed.LANB}} {
		if _, err := coord.Admin(ctx, "routes", "approve", r.node, r.lan); err != nil {
			t.Fatal(err)
		}
	}

	checkLuCICommands(ctx, t, b)

	// dnsmasq, started by the agent's reload, answers mesh names for b1.
	ipA := ""
	if sa, err := a.Status(ctx); err == nil {
		ipA = sa.Self.IPv4()
	}
	deadline := time.Now().Add(30 * time.Second)
	var last testbed.Answer
	for {
		last, err = s.B1.Lookup(ctx, testbed.RouterBLAN, "router-a."+meshDomain, "A")
		if err == nil && last.Status == "NOERROR" && slices.Equal(last.Addrs, []string{ipA}) {
			break
		}
		if time.Now().After(deadline) {
			rl, _ := os.ReadFile(reloads)
			t.Fatalf("b1 cannot resolve router-a.%s through router-b's dnsmasq: %v %v (reloads: %q; agent log %s)", meshDomain, last, err, rl, b.Proc.LogPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rl, _ := os.ReadFile(reloads); !strings.Contains(string(rl), "reloaded") {
		t.Fatalf("the agent did not run dns.dnsmasq_reload")
	}
	t.Logf("b1 resolves router-a.%s -> %s through dnsmasq the agent reloaded", meshDomain, ipA)

	// b1 reaches a1 through router B's fw4 and the mesh.
	if _, err := s.A1.ServeTCP(8446, "a1"); err != nil {
		t.Fatal(err)
	}
	d := waitConnected(t, s.B1, testbed.A1IP+":8446", "a1", 30*time.Second)
	t.Logf("b1 -> a1 through router-b (UCI, fw4) in %s", fmtMs(d))

	// A UCI change and SIGHUP, as procd sends after "uci commit lanmesh":
	// the new route is advertised and the interface is the same one.
	link := func() string {
		r, err := s.RouterB.Run(ctx, "ip", "-o", "link", "show", "lanmesh0")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(r.Stdout)[0] // "N:" the ifindex
	}
	before := link()
	extra := "198.19.102.0/24"
	uciText = strings.Replace(uciText, "list advertise_routes 'lan'", "list advertise_routes 'lan'\n\tlist advertise_routes '"+extra+"'", 1)
	write("lanmesh", uciText, 0o600)
	if err := b.Proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitStatus(ctx, "router-b advertises "+extra+" after SIGHUP", func(st *testbed.Status) bool {
		return slices.Contains(st.Self.AdvertisedRoutes, extra) && slices.Contains(st.Self.AdvertisedRoutes, testbed.LANB)
	}); err != nil {
		t.Fatalf("%v (log %s)", err, b.Proc.LogPath)
	}
	if after := link(); after != before {
		t.Errorf("lanmesh0 was recreated by the reload (ifindex %s -> %s)", before, after)
	}
	if !b.Proc.Running() {
		t.Fatal("the agent exited on SIGHUP")
	}
	waitConnected(t, s.B1, testbed.A1IP+":8446", "a1", 10*time.Second)

	// A UCI file that does not parse is refused and the running config kept.
	write("lanmesh", uciText+"\n\toption bogus\n", 0o600)
	if err := b.Proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if !b.Proc.Running() || !strings.Contains(b.Proc.Log(), "config refused, keeping the running one") {
		t.Errorf("a broken UCI file on SIGHUP: running=%v, log lacks the refusal (log %s)", b.Proc.Running(), b.Proc.LogPath)
	}
	waitConnected(t, s.B1, testbed.A1IP+":8446", "a1", 10*time.Second)
}

// checkLuCICommands runs every command the LuCI app's rpcd ACL allows
// against a real agent (the OpenWrt issue's acceptance 5), and checks that
// the JSON has every field the status view reads.
func checkLuCICommands(ctx context.Context, t *testing.T, a *testbed.Agent) {
	t.Helper()
	feed := filepath.Join("..", "..", "firmware", "openwrt")
	cmds, err := opkg.LuCIACLCommands(feed)
	if err != nil || len(cmds) == 0 {
		t.Fatalf("LuCI ACL commands: %v %v", cmds, err)
	}
	view, err := os.ReadFile(filepath.Join(feed, "luci-app-lanmesh/htdocs/luci-static/resources/view/lanmesh/status.js"))
	if err != nil {
		t.Fatal(err)
	}
	// The view names the parts of the status it reads st.x, self.x,
	// coord.x, dns.x and p.x (a peer).
	reads := regexp.MustCompile(`\b(st|self|coord|dns|p)\.([a-z_]+)\b`).FindAllStringSubmatch(string(view), -1)
	if len(reads) < 15 {
		t.Fatalf("status.js reads only %d fields?", len(reads))
	}
	for _, c := range cmds {
		if c[0] != "/usr/sbin/lanmesh" {
			t.Fatalf("ACL command %v is not lanmesh", c)
		}
		r, err := a.CLI(ctx, c[1:]...)
		if err != nil {
			t.Fatalf("%v (as LuCI runs it): %v %s", c, err, r.Stderr)
		}
		var st map[string]any
		if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
			t.Fatalf("%v: not JSON: %v", c, err)
		}
		peers, _ := st["peers"].([]any)
		if len(peers) == 0 {
			t.Fatalf("%v: no peers to check the view's peer fields against: %s", c, r.Stdout)
		}
		objs := map[string]map[string]any{"st": st, "p": peers[0].(map[string]any)}
		for _, k := range []string{"self", "coord", "dns"} {
			o, ok := st[k].(map[string]any)
			if !ok {
				t.Fatalf("%v: no %q object", c, k)
			}
			objs[k] = o
		}
		for _, m := range reads {
			if _, ok := objs[m[1]][m[2]]; !ok {
				t.Errorf("status.js reads %s.%s, which %v does not print", m[1], m[2], strings.Join(c, " "))
			}
		}
		t.Logf("LuCI's %q ran against the agent; the %d fields status.js reads are there", strings.Join(c, " "), len(reads))
	}
}

// routerAJoined starts coord on s and joins router-a (advertising LANA,
// plus extra up flags); router-b is left to the test, with its own key.
func routerAJoined(ctx context.Context, t *testing.T, s *testbed.Standard, extra ...string) (coord *testbed.Coord, a *testbed.Agent, keyB string) {
	t.Helper()
	coord, err := testbed.StartCoord(ctx, s.Coord, s.CoordAddr())
	if err != nil {
		t.Fatal(err)
	}
	keyA, err := coord.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if keyB, err = coord.CreateKey(ctx); err != nil {
		t.Fatal(err)
	}
	if a, err = testbed.StartAgent(ctx, s.RouterA, "router-a"); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Up(ctx, coord, keyA, append([]string{"--advertise-routes", testbed.LANA}, extra...)...); err != nil {
		t.Fatalf("router-a up: %v %s", err, r.Stderr)
	}
	return coord, a, keyB
}
