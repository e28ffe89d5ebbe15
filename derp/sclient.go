package derp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// maxPeersTracked bounds the per-client set of senders told PeerGone when
// the client leaves; past it the oldest knowledge is simply lost.
const maxPeersTracked = 512

// sclient is the server's side of one connected client. The reader is
// ServeConn's goroutine; writeLoop owns all writes after the handshake.
type sclient struct {
	s      *Server
	key    key.NodePublic
	conn   net.Conn
	br     *bufio.Reader
	log    *slog.Logger
	bucket *tokenBucket // nil: no rate limit

	ctx    context.Context
	cancel context.CancelFunc

	packets chan []byte // whole RecvPacket frames; drop-tail
	// queued counts the bytes in packets, capped at queueMax: a queue
	// bounded only in packets would hold 256 x 64 KiB per client.
	queued   atomic.Int64
	queueMax int64
	control  chan []byte // Pong, PeerGone, Error; drop-tail

	closeOnce sync.Once

	mu    sync.Mutex
	peers map[key.NodePublic]struct{} // who sent to us recently
}

// close ends the connection once; reason, when set, is sent as an Error
// frame first (best effort, bounded by a short deadline).
func (c *sclient) close(reason string) {
	c.closeOnce.Do(func() {
		c.cancel()
		s := c.s
		s.mu.Lock()
		if s.clients[c.key] == c {
			delete(s.clients, c.key)
			s.m.connected.Add(-1)
		} else {
			c.mu.Lock()
			c.peers = nil // replaced by a newer connection: the node is not gone
			c.mu.Unlock()
		}
		s.mu.Unlock()
		// Out of the map first, so nothing more is forwarded to it.
		if reason != "" {
			c.conn.SetWriteDeadline(time.Now().Add(time.Second))
			// writeLoop may be mid-write; a torn frame is harmless because
			// the connection closes right after.
			WriteFrame(c.conn, FrameError, textPayload(reason))
		}
		c.conn.Close()
		c.mu.Lock()
		peers := c.peers
		c.peers = nil
		c.mu.Unlock()
		for p := range peers {
			if pc := s.lookup(p); pc != nil {
				pc.enqueueControl(appendFrame(nil, FramePeerGone, c.key[:], []byte{byte(PeerGoneDisconnected)}))
			}
		}
	})
}

func (c *sclient) notePeer(k key.NodePublic) {
	c.mu.Lock()
	if c.peers != nil && len(c.peers) < maxPeersTracked {
		c.peers[k] = struct{}{}
	}
	c.mu.Unlock()
}

func (c *sclient) enqueueControl(frame []byte) {
	select {
	case c.control <- frame:
	default: // a client that cannot take control frames gets none
	}
}

// enqueuePacket queues a RecvPacket frame without ever blocking the
// sender: a slow client loses its own packets, nobody else waits.
func (c *sclient) enqueuePacket(frame []byte) bool {
	n := int64(len(frame))
	// Reserve with compare-and-swap, so the count never goes past
	// queueMax, not even for a moment another sender could observe.
	for {
		cur := c.queued.Load()
		if cur+n > c.queueMax {
			return false
		}
		if c.queued.CompareAndSwap(cur, cur+n) {
			break
		}
	}
	select {
	case c.packets <- frame:
		return true
	default:
		c.queued.Add(-n)
		return false
	}
}

func (c *sclient) readLoop() error {
	s := c.s
	idle := 2*s.opts.KeepAlive + 5*time.Second
	buf := make([]byte, 0, 2048)
	for {
		c.conn.SetReadDeadline(time.Now().Add(idle))
		t, p, err := ReadFrame(c.br, buf)
		if err != nil {
			if c.ctx.Err() == nil && isProtocolError(err) {
				s.m.badFrames.Add(1)
			}
			return err
		}
		if cap(p) > cap(buf) {
			buf = p[:0]
		}
		switch t {
		case FrameSendPacket:
			dst, pkt, err := parseKeyPacket(t, p)
			if err != nil {
				s.m.badFrames.Add(1)
				return err
			}
			if err := c.forward(dst, pkt); err != nil {
				return err
			}
		case FrameKeepAlive:
		case FramePing:
			if len(p) != pingLen {
				s.m.badFrames.Add(1)
				return fmt.Errorf("derp: Ping of %d bytes, want %d", len(p), pingLen)
			}
			c.enqueueControl(appendFrame(nil, FramePong, p))
		case FramePong:
		default:
			s.m.badFrames.Add(1)
			return fmt.Errorf("derp: unexpected %s frame from a client", t)
		}
	}
}

func (c *sclient) forward(dst key.NodePublic, pkt []byte) error {
	s := c.s
	s.m.pktsIn.Add(1)
	s.m.bytesIn.Add(int64(len(pkt)))
	if c.bucket != nil {
		if err := c.bucket.wait(c.ctx, len(pkt)); err != nil {
			return err
		}
	}
	if dst == c.key {
		// A client looping through the relay to itself only burns the
		// relay's bandwidth (S18).
		s.m.toSelf.Add(1)
		return nil
	}
	dc := s.lookup(dst)
	if dc == nil {
		s.m.unknownDst.Add(1)
		c.enqueueControl(appendFrame(nil, FramePeerGone, dst[:], []byte{byte(PeerGoneNotHere)}))
		return nil
	}
	if dc.enqueuePacket(appendFrame(make([]byte, 0, frameHeaderLen+keyLen+len(pkt)), FrameRecvPacket, c.key[:], pkt)) {
		s.m.pktsFwd.Add(1)
		s.m.bytesFwd.Add(int64(len(pkt)))
		dc.notePeer(c.key)
	} else {
		s.m.dropQueue.Add(1)
	}
	return nil
}

func (c *sclient) writeLoop() {
	defer c.close("")
	bw := bufio.NewWriterSize(c.conn, 32<<10)
	ka := time.NewTicker(c.s.opts.KeepAlive)
	defer ka.Stop()
	write := func(frame []byte) bool {
		c.conn.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
		_, err := bw.Write(frame)
		return err == nil
	}
	for {
		var frame []byte
		select {
		case <-c.ctx.Done():
			return
		case frame = <-c.control:
		case frame = <-c.packets:
			c.queued.Add(-int64(len(frame)))
		case <-ka.C:
			frame = appendFrame(nil, FrameKeepAlive)
		}
		if !write(frame) {
			return
		}
		// Batch whatever else is queued into the same flush.
	drain:
		for {
			select {
			case f := <-c.control:
				if !write(f) {
					return
				}
			case f := <-c.packets:
				c.queued.Add(-int64(len(f)))
				if !write(f) {
					return
				}
			default:
				break drain
			}
		}
		c.conn.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
		if bw.Flush() != nil {
			return
		}
	}
}

func (c *sclient) recheckLoop() {
	t := time.NewTicker(c.s.opts.RecheckInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			c.recheck(c.ctx)
		}
	}
}

// recheck asks the verifier again and drops the client on "no" or on an
// error (fail closed, S9).
func (c *sclient) recheck(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.s.opts.VerifyTimeout)
	ok, err := c.s.opts.Verifier.Allowed(ctx, c.key)
	cancel()
	if c.ctx.Err() != nil {
		return
	}
	if err != nil || !ok {
		c.s.m.dropped.Add(1)
		c.log.Info("relay client no longer allowed", "allowed", ok, "err", err)
		c.close("node key no longer allowed on this relay")
	}
}

// isProtocolError tells a misbehaving client from one that merely left.
func isProtocolError(err error) bool { return errors.Is(err, ErrFrameTooLarge) }
