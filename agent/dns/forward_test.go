package dns

import (
	"net/netip"
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
)

func TestForward(t *testing.T) {
	main := startUpstream(t, "198.18.0.1", false)
	corp := startUpstream(t, "198.18.0.2", false)
	trunc := startUpstream(t, "198.18.0.3", true)
	dead := deadUpstream(t)

	tests := []struct {
		name      string
		upstreams []netip.AddrPort
		routes    map[string][]netip.AddrPort
		qname     string
		want      []string
		rcode     int
		seenBy    *upstream
		seen      []string
	}{
		{
			name: "default upstream", upstreams: []netip.AddrPort{main.addr},
			qname: "example.com", want: []string{"198.18.0.1"}, seenBy: main,
			seen: []string{"udp example.com. A"},
		},
		{
			name: "dead first upstream, second answers", upstreams: []netip.AddrPort{dead, main.addr},
			qname: "example.org", want: []string{"198.18.0.1"}, seenBy: main,
			seen: []string{"udp example.org. A"},
		},
		{
			name: "split DNS route", upstreams: []netip.AddrPort{main.addr},
			routes: map[string][]netip.AddrPort{"corp.example": {corp.addr}, "example": {main.addr}},
			qname:  "Host.Corp.Example", want: []string{"198.18.0.2"}, seenBy: corp,
			seen: []string{"udp Host.Corp.Example. A"},
		},
		{
			name: "truncated over UDP, retried over TCP", upstreams: []netip.AddrPort{trunc.addr},
			qname: "big.example", want: []string{"198.18.0.3"}, seenBy: trunc,
			seen: []string{"udp big.example. A", "tcp big.example. A"},
		},
		{
			name: "all upstreams dead", upstreams: []netip.AddrPort{dead},
			qname: "example.net", rcode: mdns.RcodeServerFailure,
		},
		{
			name: "no upstreams", qname: "example.net", rcode: mdns.RcodeServerFailure,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := baseConfig(tc.upstreams...)
			c.Routes = tc.routes
			_, addr := startServer(t, c)
			var before int
			if tc.seenBy != nil {
				before = len(tc.seenBy.queries())
			}
			m := query(t, "udp", addr, tc.qname, mdns.TypeA)
			if m.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tc.rcode])
			}
			if got := answerAddrs(m); !slices.Equal(got, tc.want) {
				t.Errorf("answers %v, want %v", got, tc.want)
			}
			if tc.seenBy != nil {
				if got := tc.seenBy.queries()[before:]; !slices.Equal(got, tc.seen) {
					t.Errorf("upstream saw %v, want %v", got, tc.seen)
				}
			}
		})
	}
}

// A response from a client (QR set) is dropped, not answered: answering
// would let two resolvers bounce packets forever.
func TestHandleDropsResponses(t *testing.T) {
	s := New(Options{})
	if err := s.SetConfig(baseConfig()); err != nil {
		t.Fatal(err)
	}
	m := new(mdns.Msg)
	m.SetQuestion("router-a.mesh.internal.", mdns.TypeA)
	m.Response = true
	if r := s.handle(t.Context(), netip.MustParseAddr("127.0.0.1"), m); r != nil {
		t.Fatalf("answered a response: %v", r)
	}
}

func TestHandleMalformed(t *testing.T) {
	s := New(Options{})
	if err := s.SetConfig(baseConfig()); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("100.64.0.9")
	two := new(mdns.Msg)
	two.SetQuestion("a.mesh.internal.", mdns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	notify := new(mdns.Msg)
	notify.SetNotify("mesh.internal.")
	chaos := new(mdns.Msg)
	chaos.SetQuestion("version.bind.", mdns.TypeTXT)
	chaos.Question[0].Qclass = mdns.ClassCHAOS
	axfr := new(mdns.Msg)
	axfr.SetAxfr("mesh.internal.")
	tests := []struct {
		name  string
		m     *mdns.Msg
		rcode int
	}{
		{"two questions", two, mdns.RcodeFormatError},
		{"no question", &mdns.Msg{}, mdns.RcodeFormatError},
		{"notify", notify, mdns.RcodeNotImplemented},
		{"chaos class", chaos, mdns.RcodeNotImplemented},
		{"zone transfer", axfr, mdns.RcodeRefused},
	}
	for _, tc := range tests {
		r := s.handle(t.Context(), src, tc.m)
		if r == nil || r.Rcode != tc.rcode {
			t.Errorf("%s: got %v, want rcode %s", tc.name, r, mdns.RcodeToString[tc.rcode])
		}
	}
}

func TestUDPTruncation(t *testing.T) {
	// A name with many addresses does not fit 512 bytes: the UDP answer
	// must be truncated with TC so the client retries over TCP.
	c := baseConfig()
	var many []netip.Addr
	for i := range 100 {
		many = append(many, netip.AddrFrom4([4]byte{100, 64, 2, byte(i)}))
	}
	c.Records = append(c.Records, Record{Name: "many", Addrs: many})
	_, addr := startServer(t, c)
	m := new(mdns.Msg)
	m.SetQuestion("many.mesh.internal.", mdns.TypeA)
	cl := &mdns.Client{Net: "udp"}
	r, _, err := cl.Exchange(m, addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) >= 100 {
		t.Fatalf("UDP answer not truncated: TC=%v, %d answers", r.Truncated, len(r.Answer))
	}
	if r := query(t, "tcp", addr, "many.mesh.internal", mdns.TypeA); len(r.Answer) != 100 {
		t.Fatalf("TCP answer has %d records, want 100", len(r.Answer))
	}
}
