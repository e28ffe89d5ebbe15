package engine

import (
	"testing"
	"time"
)

func TestInflightBlocksAndReleases(t *testing.T) {
	f := newInflight(4, time.Hour)
	if !f.wait() {
		t.Fatal("wait on an empty limiter failed")
	}
	f.add(4)
	got := make(chan bool)
	go func() { got <- f.wait() }()
	select {
	case <-got:
		t.Fatal("wait returned while the limit was reached")
	case <-time.After(50 * time.Millisecond):
	}
	f.release(1)
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("wait reported closed")
		}
	case <-time.After(time.Second):
		t.Fatal("release did not wake the waiter")
	}
	if h := f.held(); h != 3 {
		t.Fatalf("held = %d, want 3", h)
	}
	f.release(100) // more than held: packets wireguard-go made itself
	if h := f.held(); h != 0 {
		t.Fatalf("held after over-release = %d, want 0", h)
	}
}

// Dropped packets never come back; their credit must expire so the data
// plane cannot deadlock.
func TestInflightExpiresDroppedCredit(t *testing.T) {
	f := newInflight(2, 30*time.Millisecond)
	f.add(2)
	start := time.Now()
	if !f.wait() {
		t.Fatal("wait reported closed")
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("wait returned after %v, before the credit expired", d)
	}
	if h := f.held(); h != 0 {
		t.Fatalf("held = %d, want 0 after expiry", h)
	}
}

func TestInflightCloseUnblocks(t *testing.T) {
	f := newInflight(1, time.Hour)
	f.add(1)
	got := make(chan bool)
	go func() { got <- f.wait() }()
	time.Sleep(10 * time.Millisecond)
	f.close()
	select {
	case ok := <-got:
		if ok {
			t.Fatal("wait after close reported open")
		}
	case <-time.After(time.Second):
		t.Fatal("close did not unblock the waiter")
	}
}

func TestInflightReleaseOldestFirst(t *testing.T) {
	f := newInflight(100, time.Hour)
	for i := 0; i < 200; i++ {
		f.add(1)
		f.release(1)
	}
	f.add(3)
	f.release(2)
	if h := f.held(); h != 1 {
		t.Fatalf("held = %d, want 1", h)
	}
}

// One release that frees room for several waiters wakes them all: each
// woken waiter passes the wake-up on while room remains.
func TestInflightWakesEveryWaiterWithRoom(t *testing.T) {
	f := newInflight(3, time.Hour)
	f.add(3)
	got := make(chan bool, 3)
	for range 3 {
		go func() { got <- f.wait() }()
	}
	time.Sleep(20 * time.Millisecond)
	f.release(3)
	for i := range 3 {
		select {
		case ok := <-got:
			if !ok {
				t.Fatal("wait reported closed")
			}
		case <-time.After(time.Second):
			t.Fatalf("waiter %d not woken after a release that made room for all", i+1)
		}
	}
}

// The hot path allocates nothing: garbage there is what makes the Go
// memory limit collect, and each collection empties wireguard-go's pools.
func TestInflightNoAllocs(t *testing.T) {
	f := newInflight(8, time.Hour)
	if n := testing.AllocsPerRun(1000, func() {
		f.wait()
		f.add(4)
		f.release(4)
	}); n != 0 {
		t.Fatalf("%v allocations per wait/add/release, want 0", n)
	}
	f.add(8)
	done := make(chan struct{})
	go func() {
		for f.wait() {
			f.add(1)
		}
		close(done)
	}()
	if n := testing.AllocsPerRun(200, func() {
		time.Sleep(100 * time.Microsecond) // let the producer block
		f.release(1)
	}); n > 0.1 {
		t.Fatalf("%v allocations per blocked wait and release, want 0", n)
	}
	f.close()
	<-done
}
