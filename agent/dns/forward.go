package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// upstreamsFor picks the split-DNS route for name, else the default
// upstreams.
func (snap *snapshot) upstreamsFor(name string) []netip.AddrPort {
	for _, r := range snap.routes { // longest first
		if mdns.IsSubDomain(r.domain, name) {
			return r.upstreams
		}
	}
	return snap.upstreams
}

// forward asks each upstream in turn and relays the first usable answer.
func (s *Server) forward(ctx context.Context, snap *snapshot, req *mdns.Msg, name string) *mdns.Msg {
	ups := snap.upstreamsFor(name)
	if len(ups) == 0 {
		return reply(req, mdns.RcodeServerFailure)
	}
	select {
	case s.fwdSem <- struct{}{}:
		defer func() { <-s.fwdSem }()
	default:
		s.log.Debug("forward limit reached", "name", name)
		return reply(req, mdns.RcodeServerFailure)
	}

	// Forward a copy: the id stays the client's, so the answer can be
	// relayed as is, and the caller's message is never mutated.
	out := req.Copy()
	var fallback *mdns.Msg
	var errs []error
	for _, u := range ups {
		resp, err := s.exchange(ctx, out, u)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		// SERVFAIL/REFUSED from one upstream: another may do better.
		if resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused {
			fallback = resp
			continue
		}
		return resp
	}
	if fallback != nil {
		return fallback
	}
	s.log.Debug("forward failed", "name", name, "err", errors.Join(errs...))
	return reply(req, mdns.RcodeServerFailure)
}

// exchange is one UDP query with a TCP retry when the answer is truncated.
func (s *Server) exchange(ctx context.Context, req *mdns.Msg, u netip.AddrPort) (*mdns.Msg, error) {
	resp, err := s.exchangeNet(ctx, "udp", req, u)
	if err == nil && resp.Truncated {
		resp, err = s.exchangeNet(ctx, "tcp", req, u)
	}
	return resp, err
}

func (s *Server) exchangeNet(ctx context.Context, network string, req *mdns.Msg, u netip.AddrPort) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	c := &mdns.Client{Net: network, UDPSize: mdns.MaxMsgSize, Timeout: s.timeout}
	resp, _, err := c.ExchangeContext(ctx, req, u.String())
	if err != nil {
		return nil, fmt.Errorf("upstream %s/%s: %w", u, network, err)
	}
	// The id matched (the client checks); the question must too, or a
	// confused upstream's answer would land under the wrong name.
	if len(resp.Question) != 1 || len(req.Question) != 1 ||
		!strings.EqualFold(resp.Question[0].Name, req.Question[0].Name) ||
		resp.Question[0].Qtype != req.Question[0].Qtype {
		return nil, fmt.Errorf("upstream %s/%s: answer for a different question", u, network)
	}
	return resp, nil
}
