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
// persistent keepalive). So when it has just sent an initiation, it holds
// back the one initiation from the peer that crosses it for crossDelay
// before handing it to wireguard-go. Meanwhile the peer's response to ours
// (sent at the same moment as its initiation) is processed alone. Held,
// not dropped: when ours was lost (the peer did not know us yet), the
// peer's initiation still makes the session, only crossDelay later. One
// initiation of ours holds at most one of theirs, and transport data
// disarms the guard.
//
// crossDelay: the peer sends its response right after our initiation
// reaches it, on the same path as its own initiation, so the two arrive
// milliseconds apart. Measured first-packet times (make bench, connect.md)
// were the same with 50 ms as without the guard; 150 ms added 100-300 ms
// to some pairs.
const (
	crossWindow = time.Second
	crossDelay  = 50 * time.Millisecond
)

// noteSent arms the crossing guard when bufs hold an initiation from the
// smaller key of the pair.
func (c *Conn) noteSent(e *Endpoint, bufs [][]byte) {
	for _, b := range bufs {
		if IsWireGuard(b) && b[0] == 1 {
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

// crossing reports whether pkt, a WireGuard message from e's peer, is an
// initiation crossing ours; it disarms the guard (one per initiation of
// ours). The peer's response does not disarm it: the crossing initiation
// may come right after it, and the race is between the two. Transport data
// does: a session works, nothing crosses.
func (e *Endpoint) crossing(pkt []byte) bool {
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

// holdCrossed takes pkt out of the batch when it is a crossing initiation
// from e's peer and delivers a copy crossDelay later, through the relay
// queue (which maps it to the peer again).
func (c *Conn) holdCrossed(e *Endpoint, pkt []byte) bool {
	if e.key.IsZero() || !e.crossing(pkt) {
		return false
	}
	late := relayPkt{from: e.key, pkt: bytes.Clone(pkt), late: true}
	time.AfterFunc(crossDelay, func() {
		select {
		case c.relayCh <- late:
		default: // queue full: dropped, as a lost datagram would be
		}
	})
	return true
}
