package firewall

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/lanmesh/lanmesh/internal/wire"
)

func pfx(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, x := range s {
		out[i] = netip.MustParsePrefix(x)
	}
	return out
}

// admits reports whether the plan's chain admits a packet, the way the
// kernel's set lookups would.
func (p *plan) admits(chain int, src, dst netip.Addr, proto uint8, port uint16) bool {
	f := 1
	if src.Is4() {
		f = 0
	}
	fe := p[chain][f]
	if wire.HasPorts(proto) {
		for _, e := range fe.ported {
			if e.src.contains(src) && e.dst.contains(dst) && e.proto == proto && e.ports.first <= port && port <= e.ports.last {
				return true
			}
		}
		return false
	}
	for _, e := range fe.portless {
		if e.src.contains(src) && e.dst.contains(dst) && e.proto == proto {
			return true
		}
	}
	return false
}

// disjoint checks what pipapo requires: no two elements overlap.
func (p *plan) disjoint(t *testing.T) {
	t.Helper()
	for c := range p {
		for f := range p[c] {
			for _, list := range [][]element{p[c][f].ported, p[c][f].portless} {
				for i := range list {
					for j := i + 1; j < len(list); j++ {
						a, b := list[i], list[j]
						_, s := intersect(a.src, b.src)
						_, d := intersect(a.dst, b.dst)
						pt := a.ports.first <= b.ports.last && b.ports.first <= a.ports.last
						if s && d && a.proto == b.proto && pt {
							t.Fatalf("chain %s: overlapping elements %+v and %+v", chainNames[c], a, b)
						}
					}
				}
			}
		}
	}
}

func TestBuildPlan(t *testing.T) {
	meshA := netip.MustParseAddr("100.64.0.1")
	lanHost := netip.MustParseAddr("198.18.1.2")
	routerLAN := netip.MustParseAddr("198.18.1.1")
	peer := netip.MustParseAddr("100.64.0.2")
	other := netip.MustParseAddr("100.64.0.3")
	metadata := netip.MustParseAddr("169.254.169.254")
	cfg := Config{
		MeshIface: "lanmesh0",
		Addresses: pfx("100.64.0.1/32", "fd7a:115c:a1e0::1/128"),
		// A default route would make this an exit node: S17 matters most there.
		AdvertisedRoutes: pfx("198.18.1.0/24", "0.0.0.0/0"),
		Filter: &wire.PacketFilter{
			Inbound: []wire.FilterRule{
				{Src: pfx("100.64.0.2/32"), Dst: pfx("100.64.0.1/32", "198.18.1.0/24"), Protos: []uint8{6}, Ports: []wire.PortRange{{First: 445, Last: 445}}},
				{Src: pfx("100.64.0.0/10"), Dst: pfx("100.64.0.1/32"), Protos: []uint8{6}, Ports: []wire.PortRange{{First: 440, Last: 450}}},
				{Src: pfx("100.64.0.2/32"), Dst: pfx("0.0.0.0/0"), Protos: []uint8{17}, Ports: []wire.PortRange{{First: 53, Last: 53}}},
				{Src: pfx("100.64.0.3/32"), Dst: pfx("100.64.0.1/32"), Protos: []uint8{1}},
			},
			Forward: []wire.FilterRule{
				{Src: pfx("198.18.1.0/24", "198.18.9.0/24"), Dst: pfx("100.64.0.2/32"), Protos: []uint8{6}, Ports: []wire.PortRange{{First: 80, Last: 80}}},
			},
		},
	}
	p, err := buildPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.disjoint(t)
	for _, tc := range []struct {
		name     string
		chain    int
		src, dst netip.Addr
		proto    uint8
		port     uint16
		want     bool
	}{
		{"named port to node", chainMeshIn, peer, meshA, 6, 445, true},
		{"overlapping rules both hold", chainMeshIn, other, meshA, 6, 441, true},
		{"other port", chainMeshIn, peer, meshA, 6, 22, false},
		{"S3 udp rule admits no tcp", chainMeshIn, peer, meshA, 6, 53, false},
		{"S3 icmp rule admits no tcp", chainMeshIn, other, meshA, 6, 80, false},
		{"icmp rule", chainMeshIn, other, meshA, 1, 0, true},
		{"icmp rule is per source", chainMeshIn, peer, meshA, 1, 0, false},
		{"S17 router's LAN address is not the LAN", chainMeshIn, peer, routerLAN, 6, 445, false},
		{"LAN host through route", chainMeshToLAN, peer, lanHost, 6, 445, true},
		{"S17 metadata via default route", chainMeshToLAN, peer, metadata, 17, 53, false},
		{"S17 loopback via default route", chainMeshToLAN, peer, netip.MustParseAddr("127.0.0.1"), 17, 53, false},
		{"default route beyond metadata", chainMeshToLAN, peer, netip.MustParseAddr("198.51.100.1"), 17, 53, true},
		{"S1 named LAN may", chainLANToMesh, lanHost, peer, 6, 80, true},
		{"S1 LAN not routed here may not", chainLANToMesh, netip.MustParseAddr("198.18.9.5"), peer, 6, 80, false},
		{"S1 other dst", chainLANToMesh, lanHost, other, 6, 80, false},
	} {
		if got := p.admits(tc.chain, tc.src, tc.dst, tc.proto, tc.port); got != tc.want {
			t.Errorf("%s: %s %v -> %v proto %d port %d = %v, want %v", tc.name, chainNames[tc.chain], tc.src, tc.dst, tc.proto, tc.port, got, tc.want)
		}
	}
}

func TestBuildPlanNamedHostScoped(t *testing.T) {
	// S17: a rule that names the metadata address reaches it.
	cfg := Config{MeshIface: "m", AdvertisedRoutes: pfx("0.0.0.0/0"), Filter: &wire.PacketFilter{Inbound: []wire.FilterRule{
		{Src: pfx("100.64.0.2/32"), Dst: pfx("169.254.169.254/32"), Protos: []uint8{6}, Ports: []wire.PortRange{{First: 80, Last: 80}}}}}}
	p, err := buildPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !p.admits(chainMeshToLAN, netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("169.254.169.254"), 6, 80) {
		t.Fatal("named host-scoped destination not admitted")
	}
}

func TestBuildPlanRejects(t *testing.T) {
	for name, f := range map[string]*wire.PacketFilter{
		"invalid src":     {Inbound: []wire.FilterRule{{Src: []netip.Prefix{{}}, Dst: pfx("100.64.0.1/32"), Protos: []uint8{6}}}},
		"invalid dst":     {Forward: []wire.FilterRule{{Src: pfx("100.64.0.1/32"), Dst: []netip.Prefix{{}}, Protos: []uint8{6}}}},
		"backwards ports": {Inbound: []wire.FilterRule{{Src: pfx("100.64.0.1/32"), Dst: pfx("100.64.0.1/32"), Protos: []uint8{6}, Ports: []wire.PortRange{{First: 9, Last: 1}}}}},
	} {
		if _, err := buildPlan(Config{MeshIface: "m", Filter: f}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestNilFilterIsEmpty(t *testing.T) {
	// S14: no filter, no elements: every chain ends in drop.
	p, err := buildPlan(Config{MeshIface: "m", Addresses: pfx("100.64.0.1/32"), AdvertisedRoutes: pfx("0.0.0.0/0")})
	if err != nil || p.count() != 0 {
		t.Fatalf("nil filter: %d elements, err %v", p.count(), err)
	}
}

// TestDecomposeMatchesRules checks, on random filters, that the
// disjoint elements admit exactly what the rules admit.
func TestDecomposeMatchesRules(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		f := randomFilter(r)
		checkPlanAgainstRules(t, f, r)
	}
}

func randomFilter(r *rand.Rand) *wire.PacketFilter {
	addr := func() netip.Addr { return netip.AddrFrom4([4]byte{100, 64, 0, byte(r.IntN(16))}) }
	pr := func() netip.Prefix { return netip.PrefixFrom(addr(), 28+r.IntN(5)).Masked() }
	var f wire.PacketFilter
	for range 1 + r.IntN(8) {
		rule := wire.FilterRule{Protos: []uint8{[]uint8{1, 6, 17}[r.IntN(3)]}}
		for range 1 + r.IntN(3) {
			rule.Src = append(rule.Src, pr())
			rule.Dst = append(rule.Dst, pr())
		}
		for range r.IntN(3) {
			a := uint16(r.IntN(20))
			rule.Ports = append(rule.Ports, wire.PortRange{First: a, Last: a + uint16(r.IntN(5))})
		}
		f.Forward = append(f.Forward, rule)
	}
	return &f
}

func checkPlanAgainstRules(t *testing.T, f *wire.PacketFilter, r *rand.Rand) {
	t.Helper()
	p, err := buildPlan(Config{MeshIface: "m", AdvertisedRoutes: pfx("100.64.0.0/10"), Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	p.disjoint(t)
	for range 300 {
		src := netip.AddrFrom4([4]byte{100, 64, 0, byte(r.IntN(18))})
		dst := netip.AddrFrom4([4]byte{100, 64, 0, byte(r.IntN(18))})
		proto := []uint8{1, 6, 17}[r.IntN(3)]
		port := uint16(r.IntN(26))
		want := wire.MatchAny(f.Forward, src, dst, proto, port)
		if got := p.admits(chainLANToMesh, src, dst, proto, port); got != want {
			b, _ := json.Marshal(f)
			t.Fatalf("%v -> %v proto %d port %d: plan %v, rules %v\nfilter %s", src, dst, proto, port, got, want, b)
		}
	}
}

// FuzzBuildPlan feeds arbitrary filters (as coord would send them in
// JSON) to the planner: errors are fine, panics and overlaps are not.
func FuzzBuildPlan(f *testing.F) {
	f.Add([]byte(`{"inbound":[{"src":["100.64.0.0/10"],"dst":["100.64.0.1/32"],"protos":[6],"ports":[{"first":22,"last":22}]}]}`))
	f.Add([]byte(`{"forward":[{"src":["0.0.0.0/0","::/0"],"dst":["::/0","169.254.0.0/16"],"protos":[1,58,6,17],"ports":[{"first":0,"last":65535}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var pf wire.PacketFilter
		if json.Unmarshal(b, &pf) != nil {
			return
		}
		p, err := buildPlan(Config{MeshIface: "m", Addresses: pfx("100.64.0.1/32", "fd7a::1/128"),
			AdvertisedRoutes: pfx("0.0.0.0/0", "::/0", "100.64.0.0/10", "fd7a::/16"), Filter: &pf})
		if err != nil {
			return
		}
		if p.count() < 2000 {
			p.disjoint(t)
		}
	})
}

// An allow-all filter names 0.0.0.0/0 and ::/0 together: merging them
// must keep both families (once, ::/0 vanished and IPv6 was dropped).
func TestMergeRangesKeepsFamilies(t *testing.T) {
	got := mergeRanges([]addrRange{
		prefixRange(netip.MustParsePrefix("::/0")),
		prefixRange(netip.MustParsePrefix("0.0.0.0/0")),
	})
	if len(got) != 2 || !got[0].from.Is4() || got[0].to != netip.MustParseAddr("255.255.255.255") || got[1].from.Is4() {
		t.Fatalf("mergeRanges = %v", got)
	}
}
