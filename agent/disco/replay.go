package disco

import (
	"errors"
	"time"
)

var (
	errReplay    = errors.New("disco: replayed packet (nonce seen before)")
	errNonceFull = errors.New("disco: too many packets from this peer in the replay window")
)

// replayCache remembers the nonces of one sender's authenticated packets
// for window. A nonce seen twice is a replay. It holds at most max
// entries: when the window is full the packet is refused (fail closed)
// rather than forgetting a nonce early, which would reopen the replay.
// Only packets that opened under the sender's key are recorded, so only
// that peer can fill its own cache.
//
// A replay older than window is not caught. That costs nothing: a
// replayed ping only earns a pong the replayer cannot read and a candidate
// address that never answers our own (fresh) pings, and a replayed pong
// is refused anyway because its TxID is no longer pending.
type replayCache struct {
	window time.Duration
	max    int
	seen   map[[nonceLen]byte]struct{}
	fifo   []replayEntry // in arrival order; expiry pops the front
	head   int
}

type replayEntry struct {
	nonce [nonceLen]byte
	at    time.Time
}

func newReplayCache(window time.Duration, max int) *replayCache {
	return &replayCache{window: window, max: max, seen: make(map[[nonceLen]byte]struct{})}
}

// check records nonce at now, or returns why the packet must be dropped.
func (c *replayCache) check(nonce [nonceLen]byte, now time.Time) error {
	c.expire(now)
	if _, dup := c.seen[nonce]; dup {
		return errReplay
	}
	if len(c.seen) >= c.max {
		return errNonceFull
	}
	c.seen[nonce] = struct{}{}
	c.fifo = append(c.fifo, replayEntry{nonce, now})
	return nil
}

func (c *replayCache) expire(now time.Time) {
	for c.head < len(c.fifo) && now.Sub(c.fifo[c.head].at) >= c.window {
		delete(c.seen, c.fifo[c.head].nonce)
		c.fifo[c.head] = replayEntry{}
		c.head++
	}
	// Compact so the slice does not grow for ever.
	if c.head > 0 && c.head*2 >= len(c.fifo) {
		n := copy(c.fifo, c.fifo[c.head:])
		c.fifo = c.fifo[:n]
		c.head = 0
	}
}

func (c *replayCache) len() int { return len(c.seen) }
