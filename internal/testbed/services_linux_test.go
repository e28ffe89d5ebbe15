package testbed

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestProbeOutcomes: the probes tell a connection, a RST, a silent drop
// and an answered UDP datagram apart, since the ACL tests rely on it.
func TestProbeOutcomes(t *testing.T) {
	SkipUnlessRoot(t)
	t.Parallel()
	w := New(t)
	srv, err := w.AddHost("srv")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := w.AddHost("cli")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Link(srv, "eth0", []string{"198.18.9.1/24"}, cli, "eth0", []string{"198.18.9.2/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.ServeTCP(445, "nas"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.ServeTCP(22, "ssh"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.ServeUDPEcho(5300, "udp-nas"); err != nil {
		t.Fatal(err)
	}
	// Port 22 is dropped silently: the shape of a denied packet.
	if err := srv.Nft("table inet t {\n chain in { type filter hook input priority 0; tcp dport 22 drop; }\n}\n"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		got    ProbeResult
		want   Outcome
		banner string
	}{
		{"tcp open", cli.ProbeTCP("198.18.9.1:445", time.Second), Connected, "nas"},
		{"tcp closed", cli.ProbeTCP("198.18.9.1:446", time.Second), Refused, ""},
		{"tcp dropped", cli.ProbeTCP("198.18.9.1:22", 300*time.Millisecond), TimedOut, ""},
		{"udp echo", cli.ProbeUDP("198.18.9.1:5300", time.Second), Connected, "udp-nas"},
		{"no route", cli.ProbeTCP("198.19.9.9:1", time.Second), Unreachable, ""},
	} {
		if c.got.Outcome != c.want || c.got.Banner != c.banner {
			t.Errorf("%s: %v, want %s banner %q", c.name, c.got, c.want, c.banner)
		}
	}
}

// TestDnsmasqLookup: a real dnsmasq answers a record from an included
// file and NXDOMAIN for names it knows nothing of.
func TestDnsmasqLookup(t *testing.T) {
	SkipUnlessRoot(t)
	t.Parallel()
	w := New(t)
	h, err := w.AddHost("dns")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddAddr("lo", "198.18.9.53/32"); err != nil {
		t.Fatal(err)
	}
	inc := filepath.Join(w.Dir, "extra.conf")
	if err := os.WriteFile(inc, []byte("address=/nas.home.internal/198.19.1.10\nlocal=/home.internal/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := h.StartDnsmasq(ctx, "198.18.9.53", inc); err != nil {
		t.Fatal(err)
	}
	a, err := h.Lookup(ctx, "198.18.9.53", "nas.home.internal", "A")
	if err != nil || a.Status != "NOERROR" || !slices.Equal(a.Addrs, []string{"198.19.1.10"}) {
		t.Fatalf("nas.home.internal: %v, %v", a, err)
	}
	a, err = h.Lookup(ctx, "198.18.9.53", "tv.home.internal", "A")
	if err != nil || a.Status != "NXDOMAIN" || len(a.Addrs) != 0 {
		t.Fatalf("tv.home.internal: %v, %v; want NXDOMAIN", a, err)
	}
}
