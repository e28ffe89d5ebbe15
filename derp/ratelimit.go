package derp

import (
	"context"
	"sync"
	"time"
)

// tokenBucket limits a client's relayed bytes. take never refuses: it
// goes into debt and returns how long the caller must wait, so a greedy
// client is slowed by TCP back-pressure on its own connection instead of
// seeing silent loss, and nobody else waits.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64 // bytes per second
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate, burst int64, now time.Time) *tokenBucket {
	if burst < MaxFrameSize {
		burst = MaxFrameSize // a single max packet must always fit
	}
	return &tokenBucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: now}
}

// take spends n bytes and returns the wait until the balance is back to zero.
func (b *tokenBucket) take(n int, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens += el * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
		b.last = now
	}
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// wait spends n bytes and sleeps off any debt.
func (b *tokenBucket) wait(ctx context.Context, n int) error {
	d := b.take(n, time.Now())
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
