package dns

import (
	"context"
	"net/netip"

	mdns "github.com/miekg/dns"
)

// ourUDPSize is what we advertise in EDNS: the DNS Flag Day 2020 value,
// which avoids IP fragmentation.
const ourUDPSize = 1232

// handle answers one query from src. It returns nil when nothing should
// be sent (a response packet, which would only feed a reflection loop).
func (s *Server) handle(ctx context.Context, src netip.Addr, req *mdns.Msg) *mdns.Msg {
	if req == nil || req.Response {
		return nil
	}
	snap := s.snap.Load()
	if snap == nil || !allowed(snap.allowed, src) {
		// No open resolver: a stranger learns nothing, not even whether
		// a name exists.
		s.log.Debug("refused", "client", src)
		return reply(req, mdns.RcodeRefused)
	}
	if req.Opcode != mdns.OpcodeQuery {
		return reply(req, mdns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return reply(req, mdns.RcodeFormatError)
	}
	q := req.Question[0]
	name := mdns.CanonicalName(q.Name)
	if _, ok := mdns.IsDomainName(name); !ok {
		return reply(req, mdns.RcodeFormatError)
	}
	if q.Qclass != mdns.ClassINET {
		return reply(req, mdns.RcodeNotImplemented)
	}
	if q.Qtype == mdns.TypeAXFR || q.Qtype == mdns.TypeIXFR {
		return reply(req, mdns.RcodeRefused)
	}

	if mdns.IsSubDomain(snap.domain, name) {
		return snap.answerMesh(req, name, q.Qtype)
	}
	if p, clean, ok := parseReverse(name); ok {
		full := clean && p.Bits() == p.Addr().BitLen()
		if full {
			if host, ok := snap.ptr[p.Addr()]; ok {
				return snap.answerPTR(req, name, host, q.Qtype)
			}
		}
		// S16: the mesh reverse zones are ours alone; an unknown mesh
		// address is NXDOMAIN here and is never asked upstream.
		if zone, ok := meshReverse(p, snap.meshRanges); ok {
			// An interior name above a known address exists (NODATA).
			nx := !clean || full || !snap.hasPTRUnder(p)
			return snap.negative(req, zone, nx)
		}
	}
	return s.forward(ctx, snap, req, name)
}

func (snap *snapshot) hasPTRUnder(p netip.Prefix) bool {
	for a := range snap.ptr {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func allowed(ps []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.WithZone("")
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// reply is an empty response with the request's id, question and EDNS.
func reply(req *mdns.Msg, rcode int) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetRcode(req, rcode)
	m.RecursionAvailable = true
	if len(req.Question) > 1 {
		m.Question = nil // do not echo junk back
	}
	if req.IsEdns0() != nil {
		m.SetEdns0(ourUDPSize, false)
	}
	return m
}

func (snap *snapshot) answerMesh(req *mdns.Msg, name string, qtype uint16) *mdns.Msg {
	addrs, exists := snap.names[name]
	if !exists && !snap.ents[name] && name != snap.domain {
		return snap.negative(req, snap.domain, true)
	}
	m := reply(req, mdns.RcodeSuccess)
	m.Authoritative = true
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: req.Question[0].Name, Rrtype: t, Class: mdns.ClassINET, Ttl: recordTTL}
	}
	if name == snap.domain && (qtype == mdns.TypeSOA || qtype == mdns.TypeANY) {
		m.Answer = append(m.Answer, snap.soa(snap.domain))
	}
	for _, a := range addrs {
		switch {
		case a.Is4() && (qtype == mdns.TypeA || qtype == mdns.TypeANY):
			m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(mdns.TypeA), A: a.AsSlice()})
		case a.Is6() && (qtype == mdns.TypeAAAA || qtype == mdns.TypeANY):
			m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	if len(m.Answer) == 0 {
		// NODATA: the name exists (an AAAA for an IPv4-only node must not
		// say NXDOMAIN, or resolvers drop the A too).
		m.Ns = []mdns.RR{snap.soa(snap.domain)}
	}
	return m
}

func (snap *snapshot) answerPTR(req *mdns.Msg, name, host string, qtype uint16) *mdns.Msg {
	m := reply(req, mdns.RcodeSuccess)
	m.Authoritative = true
	if qtype == mdns.TypePTR || qtype == mdns.TypeANY {
		m.Answer = []mdns.RR{&mdns.PTR{
			Hdr: mdns.RR_Header{Name: req.Question[0].Name, Rrtype: mdns.TypePTR, Class: mdns.ClassINET, Ttl: recordTTL},
			Ptr: host,
		}}
		return m
	}
	zone := parentName(name)
	if z, ok := snap.zoneFor(name); ok {
		zone = z
	}
	m.Ns = []mdns.RR{snap.soa(zone)}
	return m
}

func (snap *snapshot) zoneFor(name string) (string, bool) {
	p, _, ok := parseReverse(name)
	if !ok {
		return "", false
	}
	return meshReverse(p, snap.meshRanges)
}

// negative answers for a name we own: NXDOMAIN when nx, else NODATA
// (a reverse-tree interior name like 64.100.in-addr.arpa.).
func (snap *snapshot) negative(req *mdns.Msg, zone string, nx bool) *mdns.Msg {
	rcode := mdns.RcodeNameError
	if !nx {
		rcode = mdns.RcodeSuccess
	}
	m := reply(req, rcode)
	m.Authoritative = true
	m.Ns = []mdns.RR{snap.soa(zone)}
	return m
}

func (snap *snapshot) soa(zone string) mdns.RR {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: zone, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: negativeTTL},
		Ns:      "ns." + snap.domain,
		Mbox:    "hostmaster." + snap.domain,
		Serial:  snap.serial,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  negativeTTL,
	}
}
