package stun

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
)

// Server answers STUN Binding requests on a UDP socket with the address
// each request came from. It keeps no state per client.
type Server struct {
	Logger *slog.Logger // nil: quiet

	Requests  atomic.Int64 // well-formed binding requests (each gets an answer)
	BadPacket atomic.Int64 // dropped: not a well-formed binding request
}

// ListenAndServe listens on addr (e.g. ":3478") and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, pc.(*net.UDPConn))
}

// Serve answers requests on pc until ctx ends; it closes pc.
func (s *Server) Serve(ctx context.Context, pc *net.UDPConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	defer pc.Close()
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	buf := make([]byte, maxMessageLen+1)
	for {
		n, src, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return ctx.Err()
			}
			log.Debug("stun: read", "err", err)
			continue // e.g. ICMP-induced errors: keep serving
		}
		tx, err := ParseBindingRequest(buf[:n])
		if err != nil {
			s.BadPacket.Add(1)
			continue // never answer garbage: no reflection amplification
		}
		s.Requests.Add(1)
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if _, err := pc.WriteToUDPAddrPort(BindingResponse(tx, src), src); err != nil {
			log.Debug("stun: write", "to", src.String(), "err", err)
		}
	}
}
