package wire

import (
	"encoding/json"
	"net/netip"
	"testing"
)

func TestDERPMap(t *testing.T) {
	good := DERPMap{Regions: []DERPRegion{{ID: 1, Code: "home", Nodes: []DERPNode{
		{Name: "1a", HostName: "relay.example", IPv4: netip.MustParseAddr("198.18.0.10"), DERPPort: 8443, CertFingerprint: Fingerprint([]byte("c"))},
		{Name: "1b", IPv6: netip.MustParseAddr("2001:db8::10"), STUNPort: -1},
	}}}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(good)
	var back DERPMap
	if err := json.Unmarshal(b, &back); err != nil || back.Regions[0].Nodes[0].IPv4 != good.Regions[0].Nodes[0].IPv4 {
		t.Fatalf("round trip: %v %s", err, b)
	}
	n := good.Regions[0].Nodes
	if n[0].URL() != "https://relay.example:8443/derp" || n[1].URL() != "https://[2001:db8::10]/derp" {
		t.Fatalf("URLs %q %q", n[0].URL(), n[1].URL())
	}
	if got := n[0].STUNAddrs(); len(got) != 1 || got[0].String() != "198.18.0.10:3478" {
		t.Fatalf("STUN addrs %v", got)
	}
	if len(n[1].STUNAddrs()) != 0 {
		t.Fatal("STUN addrs when STUN is off")
	}
	if _, err := good.Region(2); err == nil {
		t.Fatal("found region 2")
	}
	for name, m := range map[string]DERPMap{
		"zero id":  {Regions: []DERPRegion{{ID: 0, Nodes: n}}},
		"dup id":   {Regions: []DERPRegion{{ID: 1, Nodes: n}, {ID: 1, Nodes: n}}},
		"no nodes": {Regions: []DERPRegion{{ID: 1}}},
		"no host":  {Regions: []DERPRegion{{ID: 1, Nodes: []DERPNode{{Name: "x"}}}}},
		"v6 as v4": {Regions: []DERPRegion{{ID: 1, Nodes: []DERPNode{{IPv4: netip.MustParseAddr("2001:db8::1")}}}}},
		"bad port": {Regions: []DERPRegion{{ID: 1, Nodes: []DERPNode{{HostName: "h", DERPPort: 70000}}}}},
		"bad pin":  {Regions: []DERPRegion{{ID: 1, Nodes: []DERPNode{{HostName: "h", CertFingerprint: "nope"}}}}},
	} {
		if err := m.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
