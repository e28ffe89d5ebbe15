package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/internal/key"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Ping implements localapi.Backend: one ICMP echo to a peer's mesh
// address, sent from the daemon so it takes the mesh route.
func (d *Daemon) Ping(ctx context.Context, req localapi.PingRequest) (localapi.PingResponse, error) {
	d.mu.Lock()
	nm := d.nm
	if nm == nil {
		d.mu.Unlock()
		return localapi.PingResponse{}, localapi.BadRequest("not connected to the mesh (no netmap): run lanmesh up")
	}
	peer, ip, err := nm.findPeer(req.Target)
	d.mu.Unlock()
	if err != nil {
		return localapi.PingResponse{}, localapi.BadRequest("%v", err)
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	rtt, err := echo(ctx, ip, req.Seq, timeout)
	if err != nil {
		return localapi.PingResponse{}, &localapi.Error{Code: http.StatusGatewayTimeout,
			Msg: fmt.Sprintf("no reply from %s (%s): %v", peer.Name, ip, err)}
	}
	resp := localapi.PingResponse{Name: peer.Name, IP: ip.String(), Seq: req.Seq, RTTMs: float64(rtt.Microseconds()) / 1000}
	for _, ps := range d.eng.Peers() {
		if ps.Key != peer.Key {
			continue
		}
		if ps.Endpoint.IsValid() {
			resp.Endpoint = ps.Endpoint.String()
		}
		resp.Path = ps.Path
		if resp.Path == "" {
			resp.Path = pathKind(ps.Endpoint)
		}
	}
	return resp, nil
}

// echo sends one ICMP echo request to dst and waits for its reply. It uses
// a raw socket when it may (root) and the kernel's unprivileged ping socket
// otherwise.
func echo(ctx context.Context, dst netip.Addr, seq int, timeout time.Duration) (time.Duration, error) {
	v6 := dst.Is6()
	network, fallback, proto := "ip4:icmp", "udp4", 1
	var typ, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	laddr := "0.0.0.0"
	if v6 {
		network, fallback, proto = "ip6:ipv6-icmp", "udp6", 58
		typ, reply = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
		laddr = "::"
	}
	raw := true
	c, err := icmp.ListenPacket(network, laddr)
	if err != nil {
		raw = false
		if c, err = icmp.ListenPacket(fallback, laddr); err != nil {
			return 0, fmt.Errorf("open ICMP socket: %w", err)
		}
	}
	defer c.Close()

	// A random token in the payload tells our reply from others' on the
	// shared raw socket.
	token := make([]byte, 16)
	rand.Read(token)
	id := int(token[0])<<8 | int(token[1])
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq & 0xffff, Data: token}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return 0, err
	}
	var to net.Addr = &net.IPAddr{IP: dst.AsSlice()}
	if !raw {
		to = &net.UDPAddr{IP: dst.AsSlice()}
	}
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()

	start := time.Now()
	if _, err := c.WriteTo(b, to); err != nil {
		return 0, fmt.Errorf("send echo: %w", err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return 0, fmt.Errorf("timed out after %v", timeout)
			}
			return 0, err
		}
		if !sameIP(from, dst) {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != reply {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		if !ok || e.Seq != seq&0xffff || !key.Equal(e.Data, token) {
			continue
		}
		return time.Since(start), nil
	}
}

func sameIP(a net.Addr, want netip.Addr) bool {
	var ip net.IP
	switch a := a.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	default:
		return false
	}
	got, ok := netip.AddrFromSlice(ip)
	return ok && got.Unmap() == want
}
