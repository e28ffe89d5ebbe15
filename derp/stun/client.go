package stun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Request sends Binding requests from conn to server, retransmitting
// (RFC 5389 §7.2.1: 500 ms, doubling) until a matching response arrives
// or ctx ends, and returns the mapped address and the round-trip time of
// the answered transmission. conn must not be read by anyone else meanwhile.
func Request(ctx context.Context, conn net.PacketConn, server netip.AddrPort) (netip.AddrPort, time.Duration, error) {
	if !server.IsValid() {
		return netip.AddrPort{}, 0, errors.New("stun: no server address")
	}
	tx := NewTxID()
	req := BindingRequest(tx)
	dst := net.UDPAddrFromAddrPort(server)
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	defer conn.SetReadDeadline(time.Time{})

	rto := 500 * time.Millisecond
	buf := make([]byte, maxMessageLen+1)
	for {
		sent := time.Now()
		if _, err := conn.WriteTo(req, dst); err != nil {
			return netip.AddrPort{}, 0, fmt.Errorf("stun: send to %s: %w", server, err)
		}
		next := sent.Add(rto)
		rto *= 2
		if d, ok := ctx.Deadline(); ok && d.Before(next) {
			next = d
		}
		if ctx.Err() != nil {
			return netip.AddrPort{}, 0, ctx.Err()
		}
		conn.SetReadDeadline(next)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				if ctx.Err() != nil {
					return netip.AddrPort{}, 0, fmt.Errorf("stun: no answer from %s: %w", server, ctx.Err())
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // retransmit
				}
				return netip.AddrPort{}, 0, fmt.Errorf("stun: read: %w", err)
			}
			if !fromServer(from, server) {
				continue
			}
			gotTx, mapped, err := ParseResponse(buf[:n])
			if err != nil || gotTx != tx {
				continue // stray or stale answer: keep waiting
			}
			return mapped, time.Since(sent), nil
		}
	}
}

func fromServer(from net.Addr, server netip.AddrPort) bool {
	ua, ok := from.(*net.UDPAddr)
	if !ok {
		return false
	}
	ap := ua.AddrPort()
	return ap.Addr().Unmap() == server.Addr().Unmap() && ap.Port() == server.Port()
}
