package dns

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

var (
	nodeA4  = netip.MustParseAddr("100.64.0.1")
	nodeA6  = netip.MustParseAddr("fd7a:115c:a1e0::1")
	nodeB4  = netip.MustParseAddr("100.127.255.254")
	lanNAS  = netip.MustParseAddr("198.19.1.10")
	testDom = "mesh.internal"
)

// baseConfig is a mesh of two nodes plus one lease name; callers set the
// upstreams.
func baseConfig(ups ...netip.AddrPort) Config {
	return Config{
		Domain: testDom,
		Records: []Record{
			{Name: "router-a", Addrs: []netip.Addr{nodeA4, nodeA6}},
			{Name: "Router-B", Addrs: []netip.Addr{nodeB4}},
		},
		LeaseRecords:   []Record{{Name: "nas.router-a", Addrs: []netip.Addr{lanNAS}}},
		Upstreams:      ups,
		AllowedClients: DefaultAllowedClients(netip.Prefix{}, netip.MustParsePrefix("198.19.1.0/24")),
	}
}

// startServer runs a Server on 127.0.0.1 with a random port.
func startServer(t testing.TB, c Config) (*Server, netip.AddrPort) {
	t.Helper()
	s := New(Options{Logger: slog.New(slog.DiscardHandler), UpstreamTimeout: 500 * time.Millisecond})
	if err := s.SetConfig(c); err != nil {
		t.Fatalf("SetConfig: %v", err)
	}
	if err := s.Listen(netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, s.Addrs()[0]
}

func query(t testing.TB, network string, server netip.AddrPort, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	c := &mdns.Client{Net: network, Timeout: 3 * time.Second}
	resp, _, err := c.Exchange(m, server.String())
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, mdns.TypeToString[qtype], network, err)
	}
	return resp
}

// upstream is a real miekg/dns server on loopback that records what it
// is asked and answers every A query with addr.
type upstream struct {
	addr     netip.AddrPort
	answer   netip.Addr
	truncUDP bool // answer UDP with TC set and no records, forcing TCP

	mu   sync.Mutex
	seen []string // "net name type"
	n    atomic.Int64
}

func startUpstream(t testing.TB, answer string, truncUDP bool) *upstream {
	t.Helper()
	u := &upstream{answer: netip.MustParseAddr(answer), truncUDP: truncUDP}
	// listenBoth retries when another process holds the TCP side.
	pc, ln, err := listenBoth(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	u.addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: u}, {Listener: ln, Handler: u}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

func (u *upstream) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	q := req.Question[0]
	network := w.LocalAddr().Network()
	u.mu.Lock()
	u.seen = append(u.seen, network+" "+q.Name+" "+mdns.TypeToString[q.Qtype])
	u.mu.Unlock()
	u.n.Add(1)
	m := new(mdns.Msg)
	m.SetReply(req)
	if u.truncUDP && network == "udp" {
		m.Truncated = true
		w.WriteMsg(m)
		return
	}
	if q.Qtype == mdns.TypeA {
		m.Answer = append(m.Answer, &mdns.A{
			Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 30},
			A:   u.answer.AsSlice(),
		})
	}
	w.WriteMsg(m)
}

func (u *upstream) queries() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

// deadUpstream is a loopback port with nothing listening: UDP gets port
// unreachable, TCP connection refused.
func deadUpstream(t testing.TB) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	return a
}

func answerAddrs(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			out = append(out, rr.A.String())
		case *mdns.AAAA:
			out = append(out, rr.AAAA.String())
		case *mdns.PTR:
			out = append(out, rr.Ptr)
		}
	}
	return out
}
