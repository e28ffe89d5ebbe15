package derp

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, FrameSendPacket, make([]byte, 32), []byte("hi")))
	f.Add(appendFrame(nil, FramePeerGone, make([]byte, 33)))
	f.Add(appendFrame(nil, FrameKeepAlive))
	f.Add(binary.BigEndian.AppendUint32([]byte{4}, 1<<31))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			typ, p, err := ReadFrame(r, nil)
			if err != nil {
				return
			}
			if len(p) > MaxFrameSize {
				t.Fatalf("payload of %d bytes passed the limit", len(p))
			}
			switch typ {
			case FrameSendPacket, FrameRecvPacket:
				if _, pkt, err := parseKeyPacket(typ, p); err == nil && len(pkt) > MaxPacketSize {
					t.Fatal("oversized packet accepted")
				}
			case FramePeerGone:
				parsePeerGone(p)
			case FrameServerKey:
				parseServerKey(p)
			case FrameError, FrameHealth:
				parseText(typ, p)
			}
		}
	})
}

func FuzzClientInfo(f *testing.F) {
	server := key.NewNode()
	var challenge [challengeLen]byte
	challenge[3] = 9
	client := key.NewNode()
	good, err := sealClientInfo(client, server.Public(), challenge, ClientInfo{Version: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0}, 200))
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, _, err := openClientInfo(b, server, challenge)
		if err != nil {
			return
		}
		// Anything that opens must be sealed by the key it names; the
		// fuzzer can only get here by leaving the valid seed intact.
		if !bytes.Equal(b, good) && pub != client.Public() {
			t.Fatalf("forged ClientInfo accepted for %s", pub.ShortString())
		}
	})
}

func TestClientInfoRoundTrip(t *testing.T) {
	server := key.NewNode()
	client := key.NewNode()
	var ch [challengeLen]byte
	ch[0] = 1
	ci, err := sealClientInfo(client, server.Public(), ch, ClientInfo{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	pub, info, err := openClientInfo(ci, server, ch)
	if err != nil || pub != client.Public() || info.Version != 1 {
		t.Fatalf("got %s %+v %v", pub.ShortString(), info, err)
	}
	// Another server key cannot open it.
	if _, _, err := openClientInfo(ci, key.NewNode(), ch); err == nil {
		t.Fatal("opened with the wrong server key")
	}
	// Version 0 (missing) is refused.
	ci0, _ := sealClientInfo(client, server.Public(), ch, ClientInfo{})
	if _, _, err := openClientInfo(ci0, server, ch); err == nil {
		t.Fatal("accepted version 0")
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	dst := key.NewNode().Public()
	if err := WriteFrame(&buf, FrameSendPacket, dst[:], []byte("payload")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(&buf, FrameSendPacket, make([]byte, MaxFrameSize+1)); err == nil {
		t.Fatal("WriteFrame wrote an oversized frame")
	}
	typ, p, err := ReadFrame(&buf, nil)
	if err != nil || typ != FrameSendPacket {
		t.Fatal(typ, err)
	}
	k, pkt, err := parseKeyPacket(typ, p)
	if err != nil || k != dst || string(pkt) != "payload" {
		t.Fatalf("got %s %q %v", k.ShortString(), pkt, err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", []byte{4, 0, 0}},
		{"oversized", binary.BigEndian.AppendUint32([]byte{4}, MaxFrameSize+1)},
		{"truncated payload", append(binary.BigEndian.AppendUint32([]byte{4}, 10), 1, 2)},
	} {
		if _, _, err := ReadFrame(bytes.NewReader(tc.in), nil); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if got := textPayload(string(bytes.Repeat([]byte("é"), maxTextLen))); len(got) > maxTextLen {
		t.Fatalf("textPayload made %d bytes", len(got))
	} else if _, err := parseText(FrameError, got); err != nil {
		t.Fatal(err)
	}
}

func TestTokenBucket(t *testing.T) {
	// Table of (bytes taken, seconds since the previous take) -> expected wait.
	b := &tokenBucket{rate: 1000, burst: 2000, tokens: 2000}
	now := b.last
	for i, tc := range []struct {
		n       int
		advance float64
		wantMs  int64
	}{
		{2000, 0, 0},     // the burst is free
		{500, 0, 500},    // then debt at 1000 B/s
		{0, 0.5, 0},      // debt paid off
		{1000, 0.5, 500}, // refill 500, spend 1000
	} {
		now = now.Add(timeSeconds(tc.advance))
		if got := b.take(tc.n, now).Milliseconds(); got != tc.wantMs {
			t.Errorf("step %d: wait %d ms, want %d", i, got, tc.wantMs)
		}
	}
}

func timeSeconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
