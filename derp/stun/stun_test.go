package stun

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

func TestCodecRoundTrip(t *testing.T) {
	tx := NewTxID()
	m, err := Parse(BindingRequest(tx))
	if err != nil || m.Type != TypeBindingRequest || m.TxID != tx || !m.HasFingerprint || m.Software != "lanmesh" {
		t.Fatalf("request: %+v %v", m, err)
	}
	for _, a := range []string{"198.18.0.7:41641", "[2001:db8::1]:3478", "0.0.0.0:0", "[::ffff:198.18.1.1]:9"} {
		ap := netip.MustParseAddrPort(a)
		want := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		b := BindingResponse(tx, ap)
		if !Is(b) {
			t.Fatal("Is(response) = false")
		}
		gotTx, got, err := ParseResponse(b)
		if err != nil || gotTx != tx || got != want {
			t.Fatalf("%s: got %v %v %v", a, gotTx, got, err)
		}
		m, _ := Parse(b)
		if m.Mapped != want || m.XORMapped != want {
			t.Fatalf("%s: mapped %v xor %v", a, m.Mapped, m.XORMapped)
		}
	}
}

// A vector from RFC 5769 §2.2 (IPv4 response), fingerprint included.
func TestRFC5769Response(t *testing.T) {
	b := []byte{
		0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
		0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20,
		0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
		0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7,
		0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort("192.0.2.1:32853"); m.XORMapped != want || !m.HasFingerprint {
		t.Fatalf("got %+v", m)
	}
	b[len(b)-1] ^= 1
	if _, err := Parse(b); err == nil {
		t.Fatal("bad fingerprint accepted")
	}
}

func TestParseRejects(t *testing.T) {
	good := BindingRequest(NewTxID())
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", good[:19]},
		{"top bits", mod(func(b []byte) []byte { b[0] |= 0x80; return b })},
		{"cookie", mod(func(b []byte) []byte { b[4] ^= 1; return b })},
		{"length mismatch", mod(func(b []byte) []byte { b[3] += 4; return b })},
		{"length not /4", mod(func(b []byte) []byte { return append(b, 0) })},
		{"attr overrun", mod(func(b []byte) []byte { binary.BigEndian.PutUint16(b[22:], 200); return b })},
		{"attr after fingerprint", mod(func(b []byte) []byte {
			b = append(b, 0, 0x22, 0, 0)
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20))
			return b
		})},
		{"bad family", func() []byte {
			b := header(TypeBindingSuccess, TxID{})
			return appendAttr(b, attrMappedAddress, []byte{0, 9, 0, 1, 1, 2, 3, 4})
		}()},
		{"short v6", func() []byte {
			b := header(TypeBindingSuccess, TxID{})
			return appendAttr(b, attrXORMapped, []byte{0, 2, 0, 1, 1, 2, 3, 4})
		}()},
	} {
		if _, err := Parse(tc.b); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := ParseBindingRequest(BindingResponse(TxID{}, netip.MustParseAddrPort("198.18.0.1:1"))); err == nil {
		t.Error("response accepted as a request")
	}
	if _, _, err := ParseResponse(good); err == nil {
		t.Error("request accepted as a response")
	}
}

// A real STUN server on loopback answers a real UDP request with the
// client socket's address, and ignores garbage.
func TestServerAnswersBindingRequest(t *testing.T) {
	for _, network := range []struct{ net, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(network.net, func(t *testing.T) {
			pc, err := net.ListenUDP(network.net, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(network.addr)))
			if err != nil {
				testenv.Unavailable(t, "no %s loopback: %v", network.net, err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			srv := &Server{}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, pc) }()
			t.Cleanup(func() { cancel(); <-done })
			server := pc.LocalAddr().(*net.UDPAddr).AddrPort()

			client, err := net.ListenUDP(network.net, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(network.addr)))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			// Garbage first: it must get no answer and not stop the server.
			client.WriteToUDPAddrPort([]byte("not stun at all, but long enough"), server)

			rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer rcancel()
			mapped, rtt, err := Request(rctx, client, server)
			if err != nil {
				t.Fatal(err)
			}
			if want := client.LocalAddr().(*net.UDPAddr).AddrPort(); mapped != want {
				t.Fatalf("mapped %v, want %v", mapped, want)
			}
			if rtt <= 0 || rtt > time.Second {
				t.Fatalf("rtt %v", rtt)
			}
			if srv.Requests.Load() != 1 || srv.BadPacket.Load() != 1 {
				t.Fatalf("requests %d bad %d", srv.Requests.Load(), srv.BadPacket.Load())
			}
		})
	}
}

func TestRequestTimesOut(t *testing.T) {
	// A socket that never answers.
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := Request(ctx, client, silent.LocalAddr().(*net.UDPAddr).AddrPort()); err == nil {
		t.Fatal("no error from a silent server")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %v", el)
	}
}

func FuzzParseSTUN(f *testing.F) {
	f.Add(BindingRequest(TxID{1}))
	f.Add(BindingResponse(TxID{2}, netip.MustParseAddrPort("198.18.0.1:41641")))
	f.Add(BindingResponse(TxID{3}, netip.MustParseAddrPort("[2001:db8::1]:3478")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		// What parses must survive a re-encode of its address.
		if a := m.Addr(); a.IsValid() {
			_, got, err := ParseResponse(BindingResponse(m.TxID, a))
			if err != nil || got != netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) {
				t.Fatalf("re-encode of %v: %v %v", a, got, err)
			}
		}
	})
}
