package dns

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func TestMeshAnswers(t *testing.T) {
	up := startUpstream(t, "198.18.0.1", false)
	_, addr := startServer(t, baseConfig(up.addr))
	tests := []struct {
		name    string
		qtype   uint16
		rcode   int
		want    []string
		wantSOA string // owner of the SOA in the authority section
	}{
		{"router-a.mesh.internal", mdns.TypeA, mdns.RcodeSuccess, []string{"100.64.0.1"}, ""},
		{"ROUTER-A.Mesh.Internal", mdns.TypeA, mdns.RcodeSuccess, []string{"100.64.0.1"}, ""},
		{"router-a.mesh.internal", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"fd7a:115c:a1e0::1"}, ""},
		{"router-b.mesh.internal", mdns.TypeA, mdns.RcodeSuccess, []string{"100.127.255.254"}, ""},
		// IPv4-only name: AAAA is NODATA, not NXDOMAIN.
		{"router-b.mesh.internal", mdns.TypeAAAA, mdns.RcodeSuccess, nil, "mesh.internal."},
		{"router-a.mesh.internal", mdns.TypeTXT, mdns.RcodeSuccess, nil, "mesh.internal."},
		{"nope.mesh.internal", mdns.TypeA, mdns.RcodeNameError, nil, "mesh.internal."},
		{"x.router-b.mesh.internal", mdns.TypeA, mdns.RcodeNameError, nil, "mesh.internal."},
		{"nas.router-a.mesh.internal", mdns.TypeA, mdns.RcodeSuccess, []string{"198.19.1.10"}, ""},
		{"mesh.internal", mdns.TypeA, mdns.RcodeSuccess, nil, "mesh.internal."},
		{"1.0.64.100.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, []string{"router-a.mesh.internal."}, ""},
		{"254.255.127.100.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, []string{"router-b.mesh.internal."}, ""},
		{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa", mdns.TypePTR, mdns.RcodeSuccess, []string{"router-a.mesh.internal."}, ""},
		{"10.1.19.198.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, []string{"nas.router-a.mesh.internal."}, ""},
		{"9.9.64.100.in-addr.arpa", mdns.TypePTR, mdns.RcodeNameError, nil, "64.100.in-addr.arpa."},
		{"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa", mdns.TypePTR, mdns.RcodeNameError, nil, "0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa."},
		// An interior reverse name above a known address exists.
		{"0.64.100.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, nil, "64.100.in-addr.arpa."},
		{"example.com", mdns.TypeA, mdns.RcodeSuccess, []string{"198.18.0.1"}, ""},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/%s/%s", network, tc.name, mdns.TypeToString[tc.qtype]), func(t *testing.T) {
				m := query(t, network, addr, tc.name, tc.qtype)
				if m.Rcode != tc.rcode {
					t.Fatalf("rcode %s, want %s", mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tc.rcode])
				}
				if got := answerAddrs(m); !slices.Equal(got, tc.want) {
					t.Errorf("answers %v, want %v", got, tc.want)
				}
				if tc.wantSOA != "" {
					if len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != mdns.TypeSOA || m.Ns[0].Header().Name != tc.wantSOA {
						t.Errorf("authority %v, want one SOA for %s", m.Ns, tc.wantSOA)
					}
				}
				if m.Question[0].Name != mdns.Fqdn(tc.name) {
					t.Errorf("question echoed as %q", m.Question[0].Name)
				}
			})
		}
	}
}

// S16: PTR lookups for mesh ranges are answered locally, never forwarded
// upstream; the upstream here is real and counts what reaches it.
func TestMeshPTRNeverForwarded(t *testing.T) {
	up := startUpstream(t, "198.18.0.1", false)
	_, addr := startServer(t, baseConfig(up.addr))
	names := []string{
		"5.4.64.100.in-addr.arpa",
		"1.0.64.100.in-addr.arpa",
		"1.1.127.100.in-addr.arpa",
		"0.0.100.100.in-addr.arpa",
		"64.100.in-addr.arpa",
		"junk.3.64.100.in-addr.arpa",
		"1.2.3.4.5.64.100.in-addr.arpa",
		"0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa",
		"f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa",
		"x.0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa",
	}
	for _, n := range names {
		for _, qt := range []uint16{mdns.TypePTR, mdns.TypeA, mdns.TypeSOA} {
			m := query(t, "udp", addr, n, qt)
			if m.Rcode != mdns.RcodeNameError && m.Rcode != mdns.RcodeSuccess {
				t.Errorf("%s %s: rcode %s", n, mdns.TypeToString[qt], mdns.RcodeToString[m.Rcode])
			}
			if !m.Authoritative {
				t.Errorf("%s %s: not answered authoritatively", n, mdns.TypeToString[qt])
			}
		}
	}
	if q := up.queries(); len(q) != 0 {
		t.Fatalf("upstream saw mesh reverse lookups: %v", q)
	}
	// The counter works: a PTR outside the mesh ranges does go upstream.
	query(t, "udp", addr, "4.3.2.1.in-addr.arpa", mdns.TypePTR)
	query(t, "udp", addr, "63.100.in-addr.arpa", mdns.TypePTR)
	if q := up.queries(); len(q) != 2 {
		t.Fatalf("upstream saw %v, want the 2 non-mesh PTRs", q)
	}
}

func TestRefused(t *testing.T) {
	up := startUpstream(t, "198.18.0.1", false)
	c := baseConfig(up.addr)
	// Everything but loopback: the test's own queries come from a
	// stranger.
	c.AllowedClients = []netip.Prefix{MeshIPv4, DefaultMeshULA, netip.MustParsePrefix("198.19.1.0/24")}
	_, addr := startServer(t, c)
	for _, n := range []string{"router-a.mesh.internal", "example.com", "1.0.64.100.in-addr.arpa"} {
		for _, network := range []string{"udp", "tcp"} {
			m := query(t, network, addr, n, mdns.TypeA)
			if m.Rcode != mdns.RcodeRefused || len(m.Answer) != 0 || len(m.Ns) != 0 {
				t.Errorf("%s over %s: rcode %s answers %v, want bare REFUSED", n, network, mdns.RcodeToString[m.Rcode], m.Answer)
			}
		}
	}
	if q := up.queries(); len(q) != 0 {
		t.Errorf("a refused client's query reached the upstream: %v", q)
	}
}

func TestRefusedBeforeConfig(t *testing.T) {
	s := New(Options{Logger: slog.New(slog.DiscardHandler)})
	if err := s.Listen(netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if m := query(t, "udp", s.Addrs()[0], "router-a.mesh.internal", mdns.TypeA); m.Rcode != mdns.RcodeRefused {
		t.Fatalf("before the first netmap: rcode %s, want REFUSED", mdns.RcodeToString[m.Rcode])
	}
}

func TestSetConfigRejectsBadConfig(t *testing.T) {
	s := New(Options{})
	good := baseConfig()
	if err := s.SetConfig(good); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		mod  func(*Config)
	}{
		{"empty domain", func(c *Config) { c.Domain = "" }},
		{"bad domain", func(c *Config) { c.Domain = "mesh..internal" }},
		{"domain char", func(c *Config) { c.Domain = "me sh.internal" }},
		{"invalid upstream", func(c *Config) { c.Upstreams = []netip.AddrPort{{}} }},
		{"route inside mesh", func(c *Config) {
			c.Routes = map[string][]netip.AddrPort{"x.mesh.internal": {netip.MustParseAddrPort("127.0.0.1:53")}}
		}},
		{"route without upstreams", func(c *Config) { c.Routes = map[string][]netip.AddrPort{"corp.example": nil} }},
		{"bad prefix", func(c *Config) { c.AllowedClients = []netip.Prefix{{}} }},
		{"v4 ULA", func(c *Config) { c.MeshULA = netip.MustParsePrefix("10.0.0.0/8") }}, // example data: an invalid ULA
	}
	for _, tc := range bad {
		c := baseConfig()
		tc.mod(&c)
		if err := s.SetConfig(c); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	// The good snapshot is still in place.
	if got := s.snap.Load().names["router-a.mesh.internal."]; len(got) != 2 {
		t.Fatalf("old config lost after rejected ones: %v", got)
	}
}

func TestBadRecordsSkipped(t *testing.T) {
	c := baseConfig()
	c.Records = append(c.Records,
		Record{Name: "bad name", Addrs: []netip.Addr{nodeB4}},
		Record{Name: "-x", Addrs: []netip.Addr{nodeB4}},
		Record{Name: "", Addrs: []netip.Addr{nodeB4}},
		Record{Name: "noaddr", Addrs: []netip.Addr{{}}},
	)
	snap, warns, err := compile(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 4 {
		t.Errorf("warnings %v, want 4", warns)
	}
	if _, ok := snap.names["router-a.mesh.internal."]; !ok {
		t.Error("good record dropped")
	}
	if _, ok := snap.names["noaddr.mesh.internal."]; !ok {
		t.Error("name with only bad addresses should still exist")
	}
}

// Concurrent queries while SetConfig swaps snapshots: every answer must
// come from one whole snapshot (run with -race).
func TestSetConfigConcurrent(t *testing.T) {
	s, addr := startServer(t, baseConfig())
	gen := func(i int) Config {
		c := baseConfig()
		a := netip.AddrFrom4([4]byte{100, 64, 1, byte(i)})
		// Both names carry the same generation's address, so a mixed
		// snapshot would show up as a mismatch.
		c.Records = []Record{{Name: "gen", Addrs: []netip.Addr{a}}, {Name: "gen2", Addrs: []netip.Addr{a}}}
		return c
	}
	if err := s.SetConfig(gen(0)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var swaps atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.SetConfig(gen(i % 200)); err != nil {
				t.Error(err)
				return
			}
			swaps.Add(1)
		}
	}()
	var answered atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
			for i := 0; i < 200; i++ {
				m := new(mdns.Msg)
				m.SetQuestion("gen.mesh.internal.", mdns.TypeA)
				resp, _, err := c.Exchange(m, addr.String())
				if err != nil {
					t.Error(err)
					return
				}
				if resp.Rcode != mdns.RcodeSuccess || len(resp.Answer) != 1 {
					t.Errorf("mid-swap answer: %v", resp)
					return
				}
				// In-process too: both names in one handle call see one snapshot.
				snap := s.snap.Load()
				if !slices.Equal(snap.names["gen.mesh.internal."], snap.names["gen2.mesh.internal."]) {
					t.Error("torn snapshot")
					return
				}
				answered.Add(1)
			}
		}()
	}
	time.Sleep(10 * time.Millisecond)
	for answered.Load() < 1600 && !t.Failed() {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if swaps.Load() < 10 {
		t.Errorf("only %d swaps happened during the queries", swaps.Load())
	}
}

func TestCloseStopsServing(t *testing.T) {
	s, addr := startServer(t, baseConfig())
	query(t, "udp", addr, "router-a.mesh.internal", mdns.TypeA)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c := &mdns.Client{Net: "tcp", Timeout: 300 * time.Millisecond}
	m := new(mdns.Msg)
	m.SetQuestion("router-a.mesh.internal.", mdns.TypeA)
	if _, _, err := c.Exchange(m, addr.String()); err == nil {
		t.Fatal("server still answers after Close")
	}
}
