package server

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

// S18: per-source budgets, bounded table, IPv6 per /64.
func TestIPLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newIPLimiter(2, 3, 2)
	a, b, c := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")
	for i := range 3 {
		if ok, _ := l.allow(a, now); !ok {
			t.Fatalf("request %d within burst refused", i)
		}
	}
	ok, retry := l.allow(a, now)
	if ok || retry != 500*time.Millisecond {
		t.Fatalf("past burst: ok %v retry %v, want refused with 500ms", ok, retry)
	}
	if ok, _ := l.allow(b, now); !ok {
		t.Fatal("another source starved by the first")
	}
	if ok, _ := l.allow(a, now.Add(500*time.Millisecond)); !ok {
		t.Fatal("budget does not refill")
	}
	l.allow(c, now)
	if l.len() != 2 {
		t.Fatalf("table holds %d sources, bound 2", l.len())
	}
	for _, tt := range []struct{ remote, want string }{
		{"198.18.0.1:443", "198.18.0.1"},
		{"[::ffff:198.18.0.1]:443", "198.18.0.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::"},
		{"[2001:db8:1:2:ffff::1]:1", "2001:db8:1:2::"},
		{"garbage", "invalid IP"},
	} {
		if got := sourceKey(tt.remote).String(); got != tt.want {
			t.Errorf("sourceKey(%q) = %s, want %s", tt.remote, got, tt.want)
		}
	}
	w := httptest.NewRecorder()
	tooMany(w, 1200*time.Millisecond, "x")
	if w.Code != 429 || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("tooMany: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
}

// A node's new stream ends its oldest past the per-node cap; the total
// cap refuses (S18).
func TestStreamSet(t *testing.T) {
	ss := newStreamSet(3, 2)
	bg := context.Background()
	c1, r1, ok1 := ss.open(bg, 1)
	c2, _, ok2 := ss.open(bg, 1)
	if !ok1 || !ok2 || c1.Err() != nil {
		t.Fatal("two streams of one node refused")
	}
	_, _, ok3 := ss.open(bg, 1)
	if !ok3 || c1.Err() == nil || c2.Err() != nil {
		t.Fatalf("third stream of node 1: ok %v, oldest ended %v, second ended %v", ok3, c1.Err() != nil, c2.Err() != nil)
	}
	r1() // the evicted stream's release must not count twice
	if ss.count() != 2 {
		t.Fatalf("count %d, want 2", ss.count())
	}
	_, r4, ok4 := ss.open(bg, 2)
	if !ok4 {
		t.Fatal("stream of node 2 refused below the total cap")
	}
	if _, _, ok := ss.open(bg, 3); ok {
		t.Fatal("stream past the total cap accepted")
	}
	r4()
	r4()
	if _, _, ok := ss.open(bg, 3); !ok || ss.count() != 3 {
		t.Fatalf("after a release: ok %v count %d", ok, ss.count())
	}
}
