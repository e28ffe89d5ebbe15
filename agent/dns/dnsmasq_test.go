package dns

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

func TestDnsmasqConfig(t *testing.T) {
	got := DnsmasqConfig("Mesh.Internal.", netip.MustParseAddrPort("127.0.0.1:5354"), netip.Prefix{})
	lines := strings.Split(strings.TrimSpace(got), "\n")
	for _, want := range []string{
		"server=/mesh.internal/127.0.0.1#5354",
		"rebind-domain-ok=/mesh.internal/",
		"server=/64.100.in-addr.arpa/127.0.0.1#5354",
		"server=/100.100.in-addr.arpa/127.0.0.1#5354",
		"server=/127.100.in-addr.arpa/127.0.0.1#5354",
		"server=/0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa/127.0.0.1#5354",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	for _, l := range lines {
		if strings.Contains(l, "63.100.in-addr") || strings.Contains(l, "128.100.in-addr") {
			t.Errorf("reverse zone outside 100.64.0.0/10: %q", l)
		}
	}
	if n := strings.Count(got, "in-addr.arpa/"); n != 64 {
		t.Errorf("%d IPv4 reverse zones, want 64", n)
	}
	if v6 := DnsmasqConfig("m", netip.MustParseAddrPort("[::1]:53"), netip.Prefix{}); !strings.Contains(v6, "server=/m/::1#53\n") {
		t.Errorf("IPv6 target: %s", v6)
	}
}

func TestMeshReverseZones(t *testing.T) {
	z := meshReverseZones(netip.MustParsePrefix("fd00:1::/30"))
	// /30 rounds out to four /32 zones.
	want := []string{"0.0.0.0.0.0.d.f.ip6.arpa.", "1.0.0.0.0.0.d.f.ip6.arpa.", "2.0.0.0.0.0.d.f.ip6.arpa.", "3.0.0.0.0.0.d.f.ip6.arpa."}
	if got := z[64:]; !slices.Equal(got, want) {
		t.Errorf("v6 zones %v, want %v", got, want)
	}
}

// freePort finds a port free on 127.0.0.1 for both UDP and TCP.
func freePort(t *testing.T) int {
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		pc.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// A real dnsmasq, configured only by DnsmasqConfig's lines (as on a
// router), resolves mesh names and mesh PTRs through the agent's server.
func TestDnsmasqForwardsMeshDomain(t *testing.T) {
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		testenv.Unavailable(t, "dnsmasq not installed (apt-get install -y --no-install-recommends dnsmasq-base)")
	}
	up := startUpstream(t, "198.18.0.1", false)
	_, agent := startServer(t, baseConfig(up.addr))

	dir := t.TempDir()
	conf := filepath.Join(dir, "lanmesh.conf")
	// stop-dns-rebind as OpenWrt sets it: mesh answers must survive it
	// thanks to rebind-domain-ok.
	body := DnsmasqConfig(testDom, agent, netip.Prefix{}) + "stop-dns-rebind\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--no-daemon", "--no-resolv", "--no-hosts",
		"--port", strconv.Itoa(port), "--listen-address", "127.0.0.1", "--bind-interfaces",
		"--conf-file="+conf, "--pid-file", "--user=root", "--log-queries", "--log-facility=-")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq output:\n%s", out.String())
		}
	})
	dm := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))

	// Wait until dnsmasq answers at all.
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := new(mdns.Msg)
		m.SetQuestion("router-a.mesh.internal.", mdns.TypeA)
		c := &mdns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
		if _, _, err := c.Exchange(m, dm.String()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq did not start on %s", dm)
		}
		time.Sleep(50 * time.Millisecond)
	}

	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"router-a.mesh.internal", mdns.TypeA, mdns.RcodeSuccess, []string{"100.64.0.1"}},
		{"Router-B.mesh.internal", mdns.TypeA, mdns.RcodeSuccess, []string{"100.127.255.254"}},
		{"router-a.mesh.internal", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"fd7a:115c:a1e0::1"}},
		{"nas.router-a.mesh.internal", mdns.TypeA, mdns.RcodeSuccess, []string{"198.19.1.10"}},
		{"nope.mesh.internal", mdns.TypeA, mdns.RcodeNameError, nil},
		{"1.0.64.100.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, []string{"router-a.mesh.internal."}},
		{"7.7.99.100.in-addr.arpa", mdns.TypePTR, mdns.RcodeNameError, nil},
	}
	for _, tc := range tests {
		m := query(t, "udp", dm, tc.name, tc.qtype)
		if m.Rcode != tc.rcode {
			t.Errorf("%s %s via dnsmasq: rcode %s, want %s", tc.name, mdns.TypeToString[tc.qtype],
				mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tc.rcode])
			continue
		}
		if got := answerAddrs(m); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s via dnsmasq: %v, want %v", tc.name, mdns.TypeToString[tc.qtype], got, tc.want)
		}
	}
	// dnsmasq has no other upstream (--no-resolv), and the agent keeps
	// mesh lookups local: the agent's upstream saw nothing.
	if q := up.queries(); len(q) != 0 {
		t.Errorf("agent's upstream saw %v", q)
	}
}

func TestParseResolvConf(t *testing.T) {
	in := "# generated\nsearch lan\nnameserver 198.18.0.53\nnameserver  2001:db8::53 \nnameserver\nnameserver bogus\nnameserver 1.2.3.4 extra\noptions ndots:1\nnameserver ::ffff:198.18.0.54 # mapped\n"
	got, err := ParseResolvConf([]byte(in))
	want := []netip.AddrPort{
		netip.MustParseAddrPort("198.18.0.53:53"),
		netip.MustParseAddrPort("[2001:db8::53]:53"),
		netip.MustParseAddrPort("198.18.0.54:53"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if err == nil || !strings.Contains(err.Error(), "line 6") || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("error %v should name line 6 and the bad address", err)
	}

	path := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(path, []byte("nameserver 198.18.0.53\n"), 0o444)
	before, _ := os.Stat(path)
	ups, err := ReadResolvConf(path)
	if err != nil || len(ups) != 1 {
		t.Fatalf("ReadResolvConf: %v %v", ups, err)
	}
	if after, _ := os.Stat(path); !after.ModTime().Equal(before.ModTime()) {
		t.Error("ReadResolvConf touched the file")
	}
	if _, err := ReadResolvConf(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

// S16: the snippet must route the mesh's own /48 reverse zone to the
// agent; each coord picks a random ULA, so the default would leak IPv6
// mesh PTR lookups upstream.
func TestDnsmasqConfigUsesMeshULA(t *testing.T) {
	ula := netip.MustParsePrefix("fd4b:718:d7cc::/48")
	got := DnsmasqConfig("m", netip.MustParseAddrPort("127.0.0.1:53535"), ula)
	if !strings.Contains(got, "server=/c.c.7.d.8.1.7.0.b.4.d.f.ip6.arpa/127.0.0.1#53535\n") {
		t.Fatalf("mesh /48 reverse zone missing:\n%s", got)
	}
	if strings.Contains(got, "0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa") {
		t.Fatalf("default ULA zone present instead:\n%s", got)
	}
}
