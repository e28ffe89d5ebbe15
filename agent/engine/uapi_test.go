package engine

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

func TestParseUAPI(t *testing.T) {
	pub := key.NewNode().Public()
	tests := []struct {
		name    string
		in      string
		wantErr string
		check   func(t *testing.T, st deviceState)
	}{
		{name: "full", in: "private_key=" + strings.Repeat("ab", 32) + "\nlisten_port=41641\npublic_key=" + pub.Hex() +
			"\npreshared_key=" + strings.Repeat("00", 32) + "\nprotocol_version=1\nendpoint=198.18.0.2:41641\n" +
			"last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\n" +
			"persistent_keepalive_interval=25\nallowed_ip=100.64.0.2/32\nerrno=0\n",
			check: func(t *testing.T, st deviceState) {
				if st.ListenPort != 41641 || len(st.Peers) != 1 {
					t.Fatalf("got %+v", st)
				}
				p := st.Peers[0]
				if p.Key != pub || p.Endpoint != netip.MustParseAddrPort("198.18.0.2:41641") ||
					!p.LastHandshake.Equal(time.Unix(1700000000, 5)) || p.TxBytes != 10 || p.RxBytes != 20 {
					t.Fatalf("peer %+v", p)
				}
			}},
		{name: "no handshake", in: "public_key=" + pub.Hex() + "\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\n",
			check: func(t *testing.T, st deviceState) {
				if !st.Peers[0].LastHandshake.IsZero() {
					t.Fatal("zero handshake time must stay zero")
				}
			}},
		{name: "no equals", in: "garbage\n", wantErr: "no '='"},
		{name: "field before peer", in: "rx_bytes=1\n", wantErr: "before public_key"},
		{name: "short key", in: "public_key=abcd\n", wantErr: "hex digits"},
		{name: "bad number", in: "public_key=" + pub.Hex() + "\nrx_bytes=-1\n", wantErr: "rx_bytes"},
		{name: "bad nsec", in: "public_key=" + pub.Hex() + "\nlast_handshake_time_nsec=1000000000\n", wantErr: "out of range"},
		{name: "bad endpoint", in: "public_key=" + pub.Hex() + "\nendpoint=nope\n", wantErr: "endpoint"},
		{name: "unknown", in: "public_key=" + pub.Hex() + "\nwhat=1\n", wantErr: "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := parseUAPI(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, st)
		})
	}
}

func FuzzParseUAPI(f *testing.F) {
	f.Add("listen_port=1\npublic_key=" + strings.Repeat("0", 64) + "\nendpoint=[::1]:2\nrx_bytes=3\n")
	f.Add("public_key=zz\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseUAPI(s) // must not panic
	})
}
