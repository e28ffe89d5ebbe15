package magicsock

import (
	"bytes"
	"time"
)

// Crossed handshakes. When both nodes of a pair send an initiation at the
// same moment, each answers the other's, and the node with the smaller key
// may get our response and the peer's initiation within the same instant.
// wireguard-go hands them to two handshake workers at once, and
// ConsumeMessageResponse checks the handshake state under a read lock but
// writes it under a later write lock: an initiation consumed in between
// leaves a session whose local index belongs to the discarded response.
// The peer's packets to us then name an index we no longer have and are
// dropped, while ours still reach the peer: a one-way session, until
// wireguard-go re-handshakes after 15 s of silence (seen in the e2e tests,
// about one run in ten).
//
// The smaller key is the designated initiator (the engine gives it the
// persistent keepalive). So when it has just sent an initiation, it drops
// the one initiation from the peer that crosses it. The peer answers ours,
// as a responder, and there is nothing left to race. The window is short,
// and one initiation of ours drops at most one of theirs. So when our
// packets never arrive (one-way reachability), the peer's next initiation
// still gets through.
const crossWindow = time.Second

// noteSent arms the crossing guard when bufs hold an initiation from the
// smaller key of the pair.
func (c *Conn) noteSent(e *Endpoint, bufs [][]byte) {
	for _, b := range bufs {
		if len(b) >= 4 && b[0] == 1 && IsWireGuard(b) {
			c.pmu.RLock()
			self := c.pub
			c.pmu.RUnlock()
			if bytes.Compare(self[:], e.key[:]) < 0 {
				e.initSent.Store(time.Now().UnixNano())
			}
			return
		}
	}
}

// dropCrossed reports whether pkt, a WireGuard message from e's peer, is
// an initiation crossing ours; it disarms the guard (one drop per
// initiation of ours). The peer's response does not disarm it: the
// crossing initiation may come right after it, and the race is between
// the two. Transport data does: a session works, nothing crosses.
func (e *Endpoint) dropCrossed(pkt []byte) bool {
	sent := e.initSent.Load()
	if sent == 0 {
		return false
	}
	switch pkt[0] {
	case 1:
		e.initSent.Store(0)
		return time.Since(time.Unix(0, sent)) < crossWindow
	case 4:
		e.initSent.Store(0)
	}
	return false
}
