package derp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// pipeConn serves one connection of s over net.Pipe and returns the
// client end.
func pipeConn(t *testing.T, s *Server) net.Conn {
	t.Helper()
	cli, srv := net.Pipe()
	go s.ServeConn(srv, nil)
	t.Cleanup(func() { cli.Close() })
	return cli
}

// S18: an unauthenticated client cannot make the relay read more than a
// ClientInfo can be: a header announcing 60 KiB is refused at once,
// without waiting for the payload.
func TestHandshakeReadCapped(t *testing.T) {
	r := newRelay(t, Options{HandshakeTimeout: time.Minute})
	c := pipeConn(t, r.s)
	br := bufio.NewReader(c)
	if ft, _, err := ReadFrame(br, nil); err != nil || ft != FrameServerKey {
		t.Fatalf("ServerKey: %v %v", ft, err)
	}
	var hdr [frameHeaderLen]byte
	hdr[0] = byte(FrameClientInfo)
	binary.BigEndian.PutUint32(hdr[1:], 60<<10)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	ft, p, err := ReadFrame(br, nil)
	if err != nil || ft != FrameError {
		t.Fatalf("after an oversized ClientInfo header: %v %q %v, want an Error frame at once", ft, p, err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed: %v", err)
	}
	if m := r.s.Metrics(); m.HandshakesFailed != 1 {
		t.Fatalf("HandshakesFailed = %d", m.HandshakesFailed)
	}
}

// S18: at most MaxHandshakes connections may sit unauthenticated; the
// next is closed at once, and a stalled one is cut at HandshakeTimeout.
func TestHandshakesCapped(t *testing.T) {
	r := newRelay(t, Options{MaxHandshakes: 2, HandshakeTimeout: 500 * time.Millisecond})
	serverKey := func(c net.Conn) error {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _, err := ReadFrame(c, nil)
		return err
	}
	stalled := []net.Conn{pipeConn(t, r.s), pipeConn(t, r.s)}
	for _, c := range stalled {
		if err := serverKey(c); err != nil {
			t.Fatalf("ServerKey within the cap: %v", err)
		}
	}
	if err := serverKey(pipeConn(t, r.s)); err == nil {
		t.Fatal("third concurrent handshake got a ServerKey with MaxHandshakes 2")
	}
	if m := r.s.Metrics(); m.HandshakesBusy != 1 {
		t.Fatalf("HandshakesBusy = %d", m.HandshakesBusy)
	}
	for _, c := range stalled {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("stalled handshake not closed by the relay: %v", err)
		}
	}
	// Slots are free again: a real client gets in.
	r.join(t)
}

// S18: a client may not send to itself through the relay.
func TestNoSendToSelf(t *testing.T) {
	r := newRelay(t, Options{})
	a, ak := r.join(t)
	if err := a.Send(ak, []byte("me")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.s.Metrics().PacketsToSelf != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("PacketsToSelf = %d", r.s.Metrics().PacketsToSelf)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m := r.s.Metrics(); m.PacketsForwarded != 0 {
		t.Fatalf("a packet to self was forwarded: %+v", m)
	}
}

// S18: a receiver's queue is bounded in bytes, whatever the packet count
// allows: 4000 x 16 KiB sent to a client that never reads leave at most
// QueueBytes queued.
func TestQueueBoundedInBytes(t *testing.T) {
	const qb = 256 << 10
	r := newRelay(t, Options{QueueLen: 100000, QueueBytes: qb, WriteTimeout: time.Minute, RateBytesPerSec: NoRateLimit})
	flooder, _ := r.join(t)
	_, sk := r.join(t) // never reads
	pkt := make([]byte, 16<<10)
	var peak int64
	for range 4000 {
		if err := flooder.Send(sk, pkt); err != nil {
			t.Fatal(err)
		}
		if c := r.s.lookup(sk); c != nil {
			peak = max(peak, c.queued.Load())
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.s.Metrics().PacketsReceived < 4000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	m := r.s.Metrics()
	if m.PacketsDroppedQueue == 0 {
		t.Fatalf("no drops for a client that never reads: %+v", m)
	}
	if peak > qb {
		t.Fatalf("queue held %d bytes, bound %d", peak, qb)
	}
	t.Logf("peak queue %d bytes, dropped %d of %d", peak, m.PacketsDroppedQueue, m.PacketsReceived)
}

// The rate limit is on by default; NoRateLimit turns it off.
func TestRateLimitDefault(t *testing.T) {
	v := VerifierFunc(func(_ context.Context, _ key.NodePublic) (bool, error) { return true, nil })
	s, err := NewServer(Options{Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	if s.opts.RateBytesPerSec != DefaultRateBytesPerSec || s.opts.QueueBytes != DefaultQueueBytes || s.opts.MaxHandshakes != DefaultMaxHandshakes {
		t.Fatalf("defaults: %+v", s.opts)
	}
	s, _ = NewServer(Options{Verifier: v, RateBytesPerSec: NoRateLimit})
	if s.opts.RateBytesPerSec != 0 {
		t.Fatalf("NoRateLimit left rate %d", s.opts.RateBytesPerSec)
	}
}

// FuzzReadFrameMax: the pre-handshake reader never returns more than its
// limit and agrees with ReadFrame on frames within it (S18).
func FuzzReadFrameMax(f *testing.F) {
	f.Add(appendFrame(nil, FrameClientInfo, make([]byte, 120)))
	f.Add(appendFrame(nil, FrameClientInfo, make([]byte, maxClientInfoLen+1)))
	f.Add(binary.BigEndian.AppendUint32([]byte{byte(FrameClientInfo)}, 60<<10))
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, p, err := readFrameMax(bytes.NewReader(b), maxClientInfoLen)
		if err != nil {
			return
		}
		if len(p) > maxClientInfoLen {
			t.Fatalf("payload of %d bytes passed the %d limit", len(p), maxClientInfoLen)
		}
		typ2, p2, err2 := ReadFrame(bytes.NewReader(b), nil)
		if err2 != nil || typ2 != typ || !bytes.Equal(p, p2) {
			t.Fatalf("ReadFrame disagrees: %v %v %v", typ2, len(p2), err2)
		}
	})
}

type fromConn struct {
	net.Conn
	ra net.Addr
}

func (c fromConn) RemoteAddr() net.Addr { return c.ra }

// S18: one source address cannot take every handshake slot: past its
// share its connections are closed, while another source still gets in.
func TestHandshakesPerSource(t *testing.T) {
	r := newRelay(t, Options{MaxHandshakes: 10, MaxHandshakesPerSource: 2, HandshakeTimeout: time.Minute})
	from := func(ip string) net.Conn {
		cli, srv := net.Pipe()
		go r.s.ServeConn(fromConn{srv, &net.TCPAddr{IP: net.ParseIP(ip), Port: 1}}, nil)
		t.Cleanup(func() { cli.Close() })
		return cli
	}
	serverKey := func(c net.Conn) error {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _, err := ReadFrame(c, nil)
		return err
	}
	for range 2 {
		if err := serverKey(from("198.18.0.66")); err != nil {
			t.Fatalf("handshake within the source's share: %v", err)
		}
	}
	if err := serverKey(from("198.18.0.66")); err == nil {
		t.Fatal("third handshake from one source got a ServerKey with a share of 2")
	}
	if err := serverKey(from("198.18.0.67")); err != nil {
		t.Fatalf("another source starved: %v", err)
	}
}
