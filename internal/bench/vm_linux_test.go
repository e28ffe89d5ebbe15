package bench

import (
	"net"
	"testing"
	"time"
)

// The sink times its window from the first byte and leaves the
// connection open (unread) for the caller to close.
func TestSinkOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	bps, c, err := sinkOnce(ln, 300*time.Millisecond, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if bps <= 0 {
		t.Fatalf("rate %v", bps)
	}
	// Nothing accepted within the deadline: an error, not a hang.
	if _, _, err := sinkOnce(ln, time.Second, 100*time.Millisecond); err == nil {
		t.Fatal("sink without a sender succeeded")
	}
}
