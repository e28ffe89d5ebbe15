package router

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/nstest"
)

// routing is everything policy routing can change, as iproute2 prints it.
func routing(t *testing.T, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"-4", "rule"}, {"-6", "rule"},
		{"-4", "route", "show", "table", "all"}, {"-6", "route", "show", "table", "all"},
	} {
		b.WriteString(nstest.Run(t, append([]string{"ip", "-n", ns}, args...)...))
	}
	return b.String()
}

// routeDev is the interface `ip route get` picks for dst (with mark).
func routeDev(t *testing.T, ns, dst, mark string) string {
	t.Helper()
	args := []string{"ip", "-n", ns, "route", "get", dst}
	if mark != "" {
		args = append(args, "mark", mark)
	}
	f := strings.Fields(nstest.Run(t, args...))
	for i := range f[:len(f)-1] {
		if f[i] == "dev" {
			return f[i+1]
		}
	}
	t.Fatalf("ip route get %s: no dev in %q", dst, f)
	return ""
}

// TestExitRouting checks the policy routing of exit-node use in a
// namespace: unmarked traffic to the internet goes to the mesh link, the
// agent's marked sockets and more specific routes keep the main table,
// connected LANs follow AllowLAN, and turning it off (or a restart after
// a crash) leaves the routing exactly as it was.
func TestExitRouting(t *testing.T) {
	nstest.RequireRoot(t)
	ns := nstest.New(t, "lmexit")
	nstest.Run(t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
	// No kernel-made link-local addresses: their DAD finishing between
	// two snapshots would change the local table by itself.
	for _, l := range []string{"eth0", "eth0p"} {
		nstest.Run(t, "ip", "-n", ns, "link", "set", l, "addrgenmode", "none")
	}
	nstest.Run(t, "ip", "-n", ns, "link", "set", "eth0p", "up")
	nstest.Run(t, "ip", "-n", ns, "addr", "add", "198.19.1.5/24", "dev", "eth0")
	nstest.Run(t, "ip", "-n", ns, "addr", "add", "2001:db8:1::5/64", "dev", "eth0", "nodad")
	nstest.Run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	nstest.Run(t, "ip", "-n", ns, "route", "add", "default", "via", "198.19.1.1")
	nstest.Run(t, "ip", "-n", ns, "route", "add", "default", "via", "2001:db8:1::1")
	nstest.Run(t, "ip", "-n", ns, "link", "add", "lm0", "type", "veth", "peer", "name", "lm0p")
	for _, l := range []string{"lm0", "lm0p"} {
		nstest.Run(t, "ip", "-n", ns, "link", "set", l, "addrgenmode", "none")
	}
	nstest.Run(t, "ip", "-n", ns, "link", "set", "lm0p", "up")

	var r *Router
	do := func(f func() error) {
		t.Helper()
		var err error
		if nerr := nstest.Do(ns, func() { err = f() }); nerr != nil {
			t.Fatal(nerr)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	do(func() (err error) { r, err = New("lm0", 1420, slog.Default()); return err })
	base := Config{Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.3/32")},
		Routes: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10")}}
	do(func() error { return r.Set(base) })
	before := routing(t, ns)

	on := base
	on.Exit = ExitConfig{Routes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}
	do(func() error { return r.Set(on) })
	for _, c := range []struct{ dst, mark, dev string }{
		{"198.18.4.10", "", "lm0"},          // the internet: through the exit node
		{"2001:db8:4::10", "", "lm0"},       // IPv6 too
		{"198.18.4.10", "0x770000", "eth0"}, // the agent's own sockets: main
		{"2001:db8:4::10", "0x770000", "eth0"},
		{"100.64.0.9", "", "lm0"},    // the mesh: its own route
		{"198.19.1.7", "", "lm0"},    // the LAN, without allow-lan-access
		{"2001:db8:1::7", "", "lm0"}, // ...
	} {
		if got := routeDev(t, ns, c.dst, c.mark); got != c.dev {
			t.Errorf("exit on: %s (mark %q) leaves through %s, want %s", c.dst, c.mark, got, c.dev)
		}
	}
	lan := on
	lan.Exit.AllowLAN = true
	do(func() error { return r.Set(lan) })
	for _, dst := range []string{"198.19.1.7", "2001:db8:1::7"} {
		if got := routeDev(t, ns, dst, ""); got != "eth0" {
			t.Errorf("allow-lan-access: %s leaves through %s, want eth0", dst, got)
		}
	}
	if got := routeDev(t, ns, "198.18.4.10", ""); got != "lm0" {
		t.Errorf("allow-lan-access: the internet leaves through %s, want lm0", got)
	}

	do(func() error { return r.Set(base) })
	if after := routing(t, ns); after != before {
		t.Errorf("exit off: routing differs from before\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// A crash leaves rules behind (the link, and so the routes, would go
	// with the process; here it stays): a new Router removes them.
	do(func() error { return r.Set(on) })
	do(func() (err error) { r, err = New("lm0", 1420, slog.Default()); return err })
	do(func() error { return r.Set(base) })
	if after := routing(t, ns); after != before {
		t.Errorf("restart after a crash: routing differs from before\nbefore:\n%s\nafter:\n%s", before, after)
	}

	if err := checkExit(ExitConfig{Routes: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}}); err == nil {
		t.Error("a non-default exit route was accepted")
	}
}
