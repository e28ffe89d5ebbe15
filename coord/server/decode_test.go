package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

func TestDecodeMap(t *testing.T) {
	nk := key.NewNode().Public()
	mk := func(extra string) []byte {
		return []byte(`{"node_key":"` + nk.String() + `"` + extra + `}`)
	}
	for _, tt := range []struct {
		name, extra, want string
	}{
		{"ok", `,"endpoints":["198.18.1.2:41641"],"advertise_routes":["198.19.1.0/24"]}`, ""},
		{"port zero", `,"endpoints":["198.18.1.2:0"]`, "not a unicast address"},
		{"host bits", `,"advertise_routes":["198.19.1.1/24"]`, "host bits"},
		{"loopback route", `,"advertise_routes":["127.0.0.0/8"]`, "loopback"},
		{"link-local route", `,"advertise_routes":["169.254.0.0/16"]`, "link-local"},
		{"bad prefix", `,"advertise_routes":["nope"]`, "malformed map request"},
		{"lan host ok", `,"lan_hosts":[{"name":"nas","addr":"198.19.1.10"}]`, ""},
		{"lan host bad name", `,"lan_hosts":[{"name":"Nas_1","addr":"198.19.1.10"}]`, "DNS label"},
		{"lan host empty name", `,"lan_hosts":[{"name":"","addr":"198.19.1.10"}]`, "DNS label"},
		{"lan host twice", `,"lan_hosts":[{"name":"a","addr":"198.19.1.10"},{"name":"a","addr":"198.19.1.11"}]`, "appears twice"},
		{"lan host loopback", `,"lan_hosts":[{"name":"a","addr":"127.0.0.1"}]`, "not a unicast LAN"},
		{"lan host no addr", `,"lan_hosts":[{"name":"a"}]`, "not a unicast LAN"},
		{"too many lan hosts", `,"lan_hosts":[` + strings.Repeat(`{"name":"a","addr":"198.19.1.1"},`, 1024) + `{"name":"a","addr":"198.19.1.1"}]`, "more than 1024"},
		{"long hostname", `,"hostname":"` + strings.Repeat("a", 300) + `"`, "hostname longer"},
	} {
		b := mk(tt.extra)
		if tt.name == "ok" {
			b = []byte(`{"node_key":"` + nk.String() + `"` + tt.extra)
		}
		_, err := decodeMap(b)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: err %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := decodeMap([]byte(`{}`)); err == nil || !strings.Contains(err.Error(), "missing node key") {
		t.Errorf("empty map request: %v", err)
	}
}

// FuzzDecodeRequest feeds arbitrary bytes to every decoder of node input:
// none may panic, and what the envelope decoder accepts must round-trip.
func FuzzDecodeRequest(f *testing.F) {
	mk := key.NewMachine()
	body, _ := json.Marshal(wire.RegisterRequest{AuthKey: "lmk1.abcd1234.0123456789abcdef0123", NodeKey: key.NewNode().Public(), Hostname: "h"})
	env, _ := json.Marshal(wire.Envelope{Version: 1, Machine: mk.Public(), Nonce: "n", Body: body, Sig: mk.Sign([]byte("x"))})
	f.Add(env)
	f.Add(body)
	f.Add([]byte(`{"node_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","endpoints":["[2001:db8::1]:5"],"advertise_routes":["::/0"]}`))
	f.Add([]byte(`{"version":1,"machine":"mkey:","nonce":"","body":"","sig":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := decodeEnvelope(b); err == nil {
			b2, _ := json.Marshal(e)
			if _, err := decodeEnvelope(b2); err != nil {
				t.Fatalf("accepted envelope does not round-trip: %v", err)
			}
		}
		decodeRegister(b)
		if r, err := decodeMap(b); err == nil {
			for _, p := range r.AdvertiseRoutes {
				if p != p.Masked() {
					t.Fatalf("accepted unmasked route %v", p)
				}
			}
		}
	})
}
