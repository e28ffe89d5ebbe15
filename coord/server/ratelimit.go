package server

import (
	"container/list"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/internal/connlimit"
)

// tokenBucket counts requests. Not safe for concurrent use: its owner
// locks.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

// take spends one token; when none is left it reports how long until one
// is.
func (b *tokenBucket) take(rate, burst float64, now time.Time) (bool, time.Duration) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(burst, b.tokens+el*rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// ipLimiter is a token bucket per source address (IPv6 per /64: one
// subscriber usually holds a whole /64) in a table of at most max
// addresses, least recently seen evicted first. An evicted address starts
// again with a full bucket, so the table bounds memory, not the rate:
// a client must rotate through more than max addresses to gain by it.
type ipLimiter struct {
	rate, burst float64
	max         int

	mu  sync.Mutex
	m   map[netip.Addr]*list.Element // of *ipEntry
	lru list.List
}

type ipEntry struct {
	addr netip.Addr
	b    tokenBucket
}

func newIPLimiter(rate, burst float64, max int) *ipLimiter {
	return &ipLimiter{rate: rate, burst: burst, max: max, m: make(map[netip.Addr]*list.Element)}
}

// sourceKey is the table key for a request's remote address.
func sourceKey(remote string) netip.Addr { return connlimit.Source(remote) }

// allow spends one of src's tokens.
func (l *ipLimiter) allow(src netip.Addr, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var e *ipEntry
	if el, ok := l.m[src]; ok {
		l.lru.MoveToFront(el)
		e = el.Value.(*ipEntry)
	} else {
		e = &ipEntry{addr: src, b: tokenBucket{tokens: l.burst, last: now}}
		l.m[src] = l.lru.PushFront(e)
		for len(l.m) > l.max {
			old := l.lru.Back()
			l.lru.Remove(old)
			delete(l.m, old.Value.(*ipEntry).addr)
		}
	}
	return e.b.take(l.rate, l.burst, now)
}

func (l *ipLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// tooMany answers 429 with a Retry-After in whole seconds (at least 1).
func tooMany(w http.ResponseWriter, retry time.Duration, what string) {
	secs := int(math.Ceil(retry.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeErr(w, http.StatusTooManyRequests, "too many "+what+" from your address; retry in "+strconv.Itoa(secs)+" s")
}
