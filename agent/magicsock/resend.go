package magicsock

import (
	"bytes"
	"time"
)

// Initiation echo. A node adds a peer when coord's netmap says so, and
// the two ends of a pair get their netmaps a few milliseconds apart (more
// on a loaded router). An initiation that reaches the peer before the
// peer knows our key is dropped there without a trace, and wireguard-go
// sends the next one only after RekeyTimeout (5 s): a peer re-added by a
// policy change then answers 5 s late. So when nothing at all has come
// back from the peer, the same initiation is sent again a few times
// within that window. A copy the peer already processed is rejected as a
// replay (its TAI64N timestamp is not newer), so an echo never makes a
// second session; one the peer had dropped now finds it configured.
//
// Only the bytes wireguard-go produced are repeated: asking it for a new
// initiation is rate-limited to one per RekeyTimeout.
var resendDelays = []time.Duration{250 * time.Millisecond, time.Second, 2500 * time.Millisecond}

// sentInit is the last initiation sent to a peer and when.
type sentInit struct {
	pkt []byte
	at  int64 // unix nanoseconds
}

// armResend remembers the initiation in bufs, if any, and schedules its
// echoes. A newer initiation supersedes the older one's echoes.
func (c *Conn) armResend(e *Endpoint, bufs [][]byte) {
	var init []byte
	for _, b := range bufs {
		if IsWireGuard(b) && b[0] == 1 {
			init = b
		}
	}
	if init == nil {
		return
	}
	s := &sentInit{pkt: bytes.Clone(init), at: time.Now().UnixNano()}
	e.lastInit.Store(s)
	for _, d := range resendDelays {
		time.AfterFunc(d, func() { c.resend(e, s) })
	}
}

// resend sends s again unless it was superseded, anything came back from
// the peer since, the peer is gone or the Conn is shut down.
func (c *Conn) resend(e *Endpoint, s *sentInit) {
	if c.ctx.Err() != nil || e.lastInit.Load() != s || e.lastRecv.Load() >= s.at || c.knownEndpoint(e.key) != e {
		return
	}
	if err := c.send([][]byte{s.pkt}, e, false); err != nil {
		c.log.Debug("initiation echo", "peer", e.key.ShortString(), "err", err)
	}
}
