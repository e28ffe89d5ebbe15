package engine

import (
	"sync"
	"time"
)

// inflight bounds how many packets one direction of the data plane holds.
// wireguard-go gives every packet its own 64 KiB buffer from a pool that
// never shrinks, so the packets in flight are its memory. The producer
// (TUN reader or UDP receiver) waits while the count is at the limit; the
// consumer (UDP send or TUN write) releases. wireguard-go drops some packets
// silently (no peer, bad MAC, queue full): their credit never comes back,
// so credit older than ttl counts as dropped. That keeps the bound from
// ever deadlocking; the price is a bound that is loose by what was dropped
// in the last ttl, plus one batch per producer (it admits a whole read).
type inflight struct {
	max int
	ttl time.Duration

	mu      sync.Mutex
	q       []credit // FIFO, oldest first, from head
	head    int
	total   int
	waiters int
	// wake (capacity 1) carries a release to one waiter, who passes it on
	// while room remains. No allocation per wait or release: at full
	// speed the producers wait thousands of times a second, and garbage
	// there makes the Go memory limit collect (and empty wireguard-go's
	// buffer pools) that much more often.
	wake   chan struct{}
	timers []*time.Timer // idle ones, reused by wait
	closed bool
	done   chan struct{}
}

type credit struct {
	n  int
	at time.Time
}

func newInflight(max int, ttl time.Duration) *inflight {
	return &inflight{max: max, ttl: ttl, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// wait blocks while the limit is reached; false means the limiter is closed.
func (f *inflight) wait() bool {
	for {
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return false
		}
		now := time.Now()
		f.expireLocked(now)
		if f.total < f.max {
			if f.waiters > 0 {
				f.signalLocked() // room for the next waiter too
			}
			f.mu.Unlock()
			return true
		}
		until := f.q[f.head].at.Add(f.ttl).Sub(now)
		f.waiters++
		var t *time.Timer
		if n := len(f.timers); n > 0 {
			t, f.timers = f.timers[n-1], f.timers[:n-1]
			t.Reset(until)
		} else {
			t = time.NewTimer(until)
		}
		f.mu.Unlock()
		select {
		case <-f.wake:
		case <-t.C:
		case <-f.done:
		}
		t.Stop()
		f.mu.Lock()
		f.waiters--
		f.timers = append(f.timers, t)
		f.mu.Unlock()
	}
}

// signalLocked wakes one waiter, or the next one to wait (a spurious
// wake-up only makes it check again).
func (f *inflight) signalLocked() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// add records n packets taken in.
func (f *inflight) add(n int) {
	if n <= 0 {
		return
	}
	f.mu.Lock()
	f.q = append(f.q, credit{n: n, at: time.Now()})
	f.total += n
	f.mu.Unlock()
}

// release returns n packets' credit, oldest first. Releasing more than is
// held (packets wireguard-go made itself) just empties the count.
func (f *inflight) release(n int) {
	if n <= 0 {
		return
	}
	f.mu.Lock()
	for n > 0 && f.head < len(f.q) {
		c := &f.q[f.head]
		take := min(n, c.n)
		c.n -= take
		f.total -= take
		n -= take
		if c.n == 0 {
			f.head++
		}
	}
	f.compactLocked()
	if f.waiters > 0 {
		f.signalLocked()
	}
	f.mu.Unlock()
}

func (f *inflight) expireLocked(now time.Time) {
	for f.head < len(f.q) && now.Sub(f.q[f.head].at) >= f.ttl {
		f.total -= f.q[f.head].n
		f.head++
	}
	f.compactLocked()
}

func (f *inflight) compactLocked() {
	if f.head == len(f.q) {
		f.q, f.head = f.q[:0], 0
	} else if f.head > 64 && f.head > len(f.q)/2 {
		f.q = f.q[:copy(f.q, f.q[f.head:])]
		f.head = 0
	}
}

// held reports the packets counted in flight right now.
func (f *inflight) held() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expireLocked(time.Now())
	return f.total
}

func (f *inflight) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.done)
	}
}
