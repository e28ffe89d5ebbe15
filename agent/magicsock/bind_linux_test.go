package magicsock

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

type received struct {
	mu    sync.Mutex
	wg    [][]byte
	other [][]byte
}

// openPair opens a receiver on loopback and returns its address, the
// receive log and a sender.
func openPair(t *testing.T, recvOpts, sendOpts Options) (*Conn, *Conn, *received, netip.AddrPort) {
	t.Helper()
	got := &received{}
	recvOpts.Handler = func(pkt []byte, _ netip.AddrPort) {
		got.mu.Lock()
		got.other = append(got.other, bytes.Clone(pkt))
		got.mu.Unlock()
	}
	r, s := New(recvOpts), New(sendOpts)
	fns, port, err := r.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); s.Close() })
	for _, fn := range fns {
		go func() {
			bs := r.BatchSize()
			bufs := make([][]byte, bs)
			for i := range bufs {
				bufs[i] = make([]byte, 65535)
			}
			sizes, eps := make([]int, bs), make([]conn.Endpoint, bs)
			for {
				n, err := fn(bufs, sizes, eps)
				if err != nil {
					return
				}
				got.mu.Lock()
				for i := 0; i < n; i++ {
					if sizes[i] > 0 {
						got.wg = append(got.wg, bytes.Clone(bufs[i][:sizes[i]]))
					}
				}
				got.mu.Unlock()
			}
		}()
	}
	return r, s, got, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
}

func transportPackets(n, size int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		b := make([]byte, size, 65535) // room to coalesce, like wireguard-go's buffers
		b[0] = 4
		for j := 4; j < size; j++ {
			b[j] = byte(i)
		}
		bufs[i] = b
	}
	return bufs
}

func waitFor(t *testing.T, got *received, wantWG, wantOther int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		got.mu.Lock()
		w, o := len(got.wg), len(got.other)
		got.mu.Unlock()
		if w >= wantWG && o >= wantOther {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	t.Fatalf("received %d WireGuard and %d other packets, want %d and %d", len(got.wg), len(got.other), wantWG, wantOther)
}

func checkInOrder(t *testing.T, got *received, n, size int) {
	t.Helper()
	got.mu.Lock()
	defer got.mu.Unlock()
	for i, p := range got.wg[:n] {
		if len(p) != size || p[0] != 4 || p[size-1] != byte(i) {
			t.Fatalf("packet %d: len %d first %d last %d, want len %d last %d", i, len(p), p[0], p[len(p)-1], size, i)
		}
	}
}

func TestSendReceive(t *testing.T) {
	for _, tt := range []struct {
		name     string
		gso, gro bool
	}{{"plain", false, false}, {"gso", true, false}, {"gso+gro", true, true}, {"gro", false, true}} {
		t.Run(tt.name, func(t *testing.T) {
			_, s, got, dst := openPair(t, Options{GRO: tt.gro}, Options{GSO: tt.gso})
			ep, err := s.ParseEndpoint(dst.String())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(transportPackets(20, 1200), ep); err != nil {
				t.Fatal(err)
			}
			waitFor(t, got, 20, 0)
			checkInOrder(t, got, 20, 1200)
		})
	}
}

// Disco and STUN share the socket: anything that is not a WireGuard message
// goes to the handler and never to WireGuard.
func TestDemux(t *testing.T) {
	_, s, got, dst := openPair(t, Options{}, Options{})
	for _, p := range [][]byte{[]byte("TS💬disco"), {0, 1, 0, 0x21, 0x12, 0xa4, 0x42}, {4, 0, 0, 1}, {5, 0, 0, 0}} {
		if err := s.WriteTo(p, dst); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WriteTo([]byte{1, 0, 0, 0, 9}, dst); err != nil {
		t.Fatal(err)
	}
	waitFor(t, got, 1, 4)
}

// A kernel that refuses UDP_SEGMENT (EIO, as without TX checksum offload)
// must not lose the batch: GSO turns off and the packets go out singly.
func TestGSOFallback(t *testing.T) {
	_, s, got, dst := openPair(t, Options{}, Options{GSO: true})
	if !s.v4.gso.Load() {
		testenv.Unavailable(t, "kernel has no UDP GSO")
	}
	orig := writeBatch
	t.Cleanup(func() { writeBatch = orig })
	refused := 0
	writeBatch = func(pc batchConn, msgs []ipv6.Message) (int, error) {
		for _, m := range msgs {
			if len(m.OOB) > 0 {
				refused++
				return 0, &wrapErr{unix.EIO}
			}
		}
		return orig(pc, msgs)
	}
	ep, _ := s.ParseEndpoint(dst.String())
	if err := s.Send(transportPackets(10, 1000), ep); err != nil {
		t.Fatal(err)
	}
	waitFor(t, got, 10, 0)
	checkInOrder(t, got, 10, 1000)
	if refused == 0 || s.v4.gso.Load() {
		t.Fatalf("refused=%d gso=%v: want the GSO send refused and GSO off", refused, s.v4.gso.Load())
	}
}

type wrapErr struct{ err error }

func (e *wrapErr) Error() string { return "sendmmsg: " + e.err.Error() }
func (e *wrapErr) Unwrap() error { return e.err }

func TestFillSendCoalesces(t *testing.T) {
	msgs := make([]ipv6.Message, 8)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
	}
	bufs := transportPackets(5, 100)
	bufs[3] = bufs[3][:50] // a short packet ends a run
	n := fillSend(msgs, bufs, nil, true, false)
	if n != 2 || len(msgs[0].Buffers[0]) != 350 || len(msgs[1].Buffers[0]) != 100 {
		t.Fatalf("n=%d lens=%d,%d; want 2 datagrams of 350 and 100 bytes", n, len(msgs[0].Buffers[0]), len(msgs[1].Buffers[0]))
	}
	hdr, data, _, err := unix.ParseOneSocketControlMessage(msgs[0].OOB)
	if err != nil || hdr.Level != unix.SOL_UDP || hdr.Type != unix.UDP_SEGMENT || len(data) < 2 || int(data[0])|int(data[1])<<8 != 100 {
		t.Fatalf("segment control = %+v %v, %v; want UDP_SEGMENT 100", hdr, data, err)
	}
	if len(msgs[1].OOB) != 0 {
		t.Fatal("a single packet got a segment control message")
	}
	if n := fillSend(msgs, transportPackets(5, 100), nil, false, false); n != 5 {
		t.Fatalf("without GSO n=%d, want 5", n)
	}
}

func TestIsWireGuard(t *testing.T) {
	for _, tt := range []struct {
		in   []byte
		want bool
	}{{[]byte{1, 0, 0, 0}, true}, {[]byte{4, 0, 0, 0, 1}, true}, {[]byte{0, 0, 0, 0}, false},
		{[]byte{5, 0, 0, 0}, false}, {[]byte{1, 0, 0}, false}, {[]byte{1, 0, 1, 0}, false}, {nil, false}} {
		if got := IsWireGuard(tt.in); got != tt.want {
			t.Errorf("IsWireGuard(%v) = %v", tt.in, got)
		}
	}
}

func FuzzGROSegmentSize(f *testing.F) {
	f.Add(appendSegmentControl(nil, 1200))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, oob []byte) {
		_, _ = groSegmentSize(oob) // must not panic
	})
}

func FuzzIsWireGuard(f *testing.F) {
	f.Add([]byte{4, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if IsWireGuard(b) && (len(b) < 4 || b[0] == 0 || b[0] > 4) {
			t.Fatal("accepted a non-WireGuard header")
		}
	})
}
