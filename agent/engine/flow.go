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
	wake    chan struct{} // closed and replaced on release while waiters > 0
	closed  bool
	done    chan struct{}
}

type credit struct {
	n  int
	at time.Time
}

func newInflight(max int, ttl time.Duration) *inflight {
	return &inflight{max: max, ttl: ttl, wake: make(chan struct{}), done: make(chan struct{})}
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
			f.mu.Unlock()
			return true
		}
		until := f.q[f.head].at.Add(f.ttl).Sub(now)
		ch := f.wake
		f.waiters++
		f.mu.Unlock()
		t := time.NewTimer(until)
		select {
		case <-ch:
		case <-t.C:
		case <-f.done:
		}
		t.Stop()
		f.mu.Lock()
		f.waiters--
		f.mu.Unlock()
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
		close(f.wake)
		f.wake = make(chan struct{})
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
