package dns

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// FuzzHandler feeds arbitrary packed messages to the handler, the way the
// server would after unpacking them: it must never panic, and whatever it
// returns must pack. The upstream is a real server on loopback so
// forwarded queries take the real path.
func FuzzHandler(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"router-a.mesh.internal.", mdns.TypeA},
		{"ROUTER-A.mesh.internal.", mdns.TypeAAAA},
		{"nope.mesh.internal.", mdns.TypeA},
		{"1.0.64.100.in-addr.arpa.", mdns.TypePTR},
		{"x.64.100.in-addr.arpa.", mdns.TypePTR},
		{"0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa.", mdns.TypeSOA},
		{"example.com.", mdns.TypeA},
		{"mesh.internal.", mdns.TypeANY},
	} {
		m := new(mdns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(4096, true)
		b, _ := m.Pack()
		f.Add(b, true)
	}
	f.Add([]byte{0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0}, false)

	up := startUpstream(f, "198.18.0.1", false)
	s := New(Options{Logger: slog.New(slog.DiscardHandler), UpstreamTimeout: 200 * time.Millisecond})
	c := baseConfig(up.addr)
	c.Routes = map[string][]netip.AddrPort{"corp.example": {up.addr}}
	if err := s.SetConfig(c); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, allowedSrc bool) {
		req := new(mdns.Msg)
		if err := req.Unpack(data); err != nil {
			return // the server answers these with FORMERR before the handler
		}
		src := netip.MustParseAddr("100.64.0.7")
		if !allowedSrc {
			src = netip.MustParseAddr("198.18.9.9")
		}
		resp := s.handle(t.Context(), src, req)
		if resp == nil {
			return
		}
		if !allowedSrc && resp.Rcode != mdns.RcodeRefused {
			t.Fatalf("stranger got rcode %s", mdns.RcodeToString[resp.Rcode])
		}
		resp.Truncate(udpLimit(req))
		if _, err := resp.Pack(); err != nil {
			t.Fatalf("response does not pack: %v\n%v", err, resp)
		}
	})
}

func FuzzParseLeases(f *testing.F) {
	f.Add([]byte("1767225600 aa:bb:cc:dd:ee:01 198.19.1.10 NAS 01:aa:bb:cc:dd:ee:01\n"))
	f.Add([]byte("duid 00:01\n0 12345678 2001:db8::1 * *\n"))
	f.Add([]byte("x y z\n\n\t\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		leases, _ := ParseLeases(bytes.NewReader(data))
		for _, r := range LeaseRecords(leases, "router-a", time.Unix(0, 0)) {
			if _, err := recordName(r.Name, "mesh.internal."); err != nil {
				t.Fatalf("lease record %q is not a valid name: %v", r.Name, err)
			}
		}
		for _, l := range leases {
			if l.Hostname != "" && checkLabel(l.Hostname) != nil {
				t.Fatalf("hostname %q is not a label", l.Hostname)
			}
		}
	})
}

func FuzzParseResolvConf(f *testing.F) {
	f.Add([]byte("nameserver 198.18.0.53\nnameserver ::1\n"))
	f.Add([]byte("nameserver fe80::1%eth0 # c\nsearch x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ups, _ := ParseResolvConf(data)
		for _, u := range ups {
			if !u.Addr().IsValid() || u.Port() != 53 {
				t.Fatalf("bad upstream %v", u)
			}
		}
	})
}

func FuzzParseReverse(f *testing.F) {
	f.Add("1.0.64.100.in-addr.arpa.")
	f.Add("0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa.")
	f.Fuzz(func(t *testing.T, name string) {
		p, clean, ok := parseReverse(strings.ToLower(name))
		if ok && clean && p.Bits() == p.Addr().BitLen() {
			// A full address round-trips through its reverse name.
			if rev := reverseName(p); rev != strings.ToLower(name) {
				t.Fatalf("%q parsed to %v, which reverses to %q", name, p, rev)
			}
		}
	})
}

// BenchmarkMeshQuery measures queries per second for a mesh name over
// real UDP on loopback (client and server on the same machine).
func BenchmarkMeshQuery(b *testing.B) {
	_, addr := startServer(b, baseConfig())
	b.RunParallel(func(pb *testing.PB) {
		c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
		conn, err := c.Dial(addr.String())
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		m := new(mdns.Msg)
		m.SetQuestion("router-a.mesh.internal.", mdns.TypeA)
		for pb.Next() {
			m.Id = mdns.Id()
			r, _, err := c.ExchangeWithConn(m, conn)
			if err != nil || len(r.Answer) != 1 {
				b.Errorf("query: %v %v", r, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

// BenchmarkHandle is the handler alone, without sockets.
func BenchmarkHandle(b *testing.B) {
	s := New(Options{Logger: slog.New(slog.DiscardHandler)})
	if err := s.SetConfig(baseConfig()); err != nil {
		b.Fatal(err)
	}
	m := new(mdns.Msg)
	m.SetQuestion("router-a.mesh.internal.", mdns.TypeA)
	src := netip.MustParseAddr("100.64.0.7")
	b.ReportAllocs()
	for b.Loop() {
		if r := s.handle(b.Context(), src, m); len(r.Answer) != 1 {
			b.Fatal(r)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}
