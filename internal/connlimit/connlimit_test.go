package connlimit

import (
	"errors"
	"net"
	"testing"
	"time"
)

// S18: at most max connections are handed out; a freed slot lets the
// next one in; Close ends an Accept waiting for a slot.
func TestTotalCap(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, 2, 10)
	defer l.Close()
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	a, _ := l.Accept()
	l.Accept()
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		got <- c
	}()
	select {
	case <-got:
		t.Fatal("third connection accepted with a cap of 2")
	case <-time.After(200 * time.Millisecond):
	}
	a.Close()
	a.Close() // a second Close must not free a second slot
	select {
	case c := <-got:
		if c == nil {
			t.Fatal("Accept failed after a slot was freed")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("freed slot not reused")
	}
	if len(l.slots) != 2 {
		t.Fatalf("slots in use %d, want 2", len(l.slots))
	}
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept waiting for a slot not ended by Close")
	}
}

func TestSource(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.0.1:443":             "198.18.0.1",
		"[::ffff:198.18.0.1]:443":    "198.18.0.1",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::",
		"garbage":                    "invalid IP",
	} {
		if got := Source(in).String(); got != want {
			t.Errorf("Source(%q) = %s, want %s", in, got, want)
		}
	}
}
