package testbed

import "time"

// NATPair is one cell of the NAT matrix: what sits in front of each router
// and the path lanmesh must end on. The e2e NAT test and lanmesh-bench's
// connect mode both run this list; docs/nat-traversal.md's table states
// the same expectations.
type NATPair struct {
	Name   string
	Opts   StandardOptions
	Direct bool   // a direct path is possible, so the pair must end direct
	Why    string // the reason, for the table
	// Within bounds the time to direct (counted from the first packet)
	// when a pair must first wait out NAT state (agent/disco/hold.go);
	// zero means DefaultDirectWithin.
	Within time.Duration
	// BenchOnly: measured by lanmesh-bench but left out of the e2e matrix
	// (the reason), because it does not yet end on its path reliably.
	BenchOnly string
}

// DefaultDirectWithin is how long a direct pair may take after the first
// packet.
const DefaultDirectWithin = 20 * time.Second

// DirectWithin is p.Within or the default.
func (p NATPair) DirectWithin() time.Duration {
	if p.Within > 0 {
		return p.Within
	}
	return DefaultDirectWithin
}

// NATPairs is the NAT matrix.
var NATPairs = []NATPair{
	{"none-none", StandardOptions{}, true, "both public", 0, ""},
	{"easy-easy", StandardOptions{NATA: NATEasy, NATB: NATEasy}, true, "full cone on both sides", 0, ""},
	// Port-restricted cones, as Linux/OpenWrt masquerade: each side's ping
	// opens its own NAT toward the other's stable mapping. The three INPUT
	// policies of the NAT box must not change that.
	{"restricted-restricted", StandardOptions{NATA: NATRestricted, NATB: NATRestricted}, true, "port-restricted, input drop", 0, ""},
	{"reject-reject", StandardOptions{NATA: NATRestrictedReject, NATB: NATRestrictedReject}, true, "port-restricted, input reject", 0, ""},
	// Both boxes take the other's first ping into their own INPUT, so
	// whichever side pings first leaves an entry in the far box that moves
	// the far router's mapping: only pings sent at the same instant (within
	// the one-way delay) could meet. See docs/nat-traversal.md.
	{"accept-accept", StandardOptions{NATA: NATRestrictedAccept, NATB: NATRestrictedAccept}, false, "both boxes accept unsolicited input: the first ping of either side moves the other's mapping", 0, ""},
	{"accept-none", StandardOptions{NATA: NATRestrictedAccept}, true, "port-restricted, input accept vs public", 0, ""},
	{"accept-easy", StandardOptions{NATA: NATRestrictedAccept, NATB: NATEasy}, true, "port-restricted, input accept vs full cone", 0, ""},
	// Against a dropping box the refused side waits after one hold (about
	// 40 s); against a rejecting one (OpenWrt's default) both sides are
	// refused, so the keys pick the order and the second hold has the
	// other (about 40 or 80 s).
	{"accept-restricted", StandardOptions{NATA: NATRestrictedAccept, NATB: NATRestricted}, true, "port-restricted, input accept vs drop", 75 * time.Second, ""},
	{"accept-reject", StandardOptions{NATA: NATRestrictedAccept, NATB: NATRestrictedReject}, true, "port-restricted, input accept vs reject", 130 * time.Second,
		"3 of 9 runs on 2026-12-04 were still relayed after 130 s: the second hold's order failed too"},
	// One symmetric side: the easy side's stable mapping is enough, the
	// hard side's pings open its own mapping toward it.
	{"easy-hard", StandardOptions{NATA: NATEasy, NATB: NATHard}, true, "full cone learns the symmetric side's port from its ping", 0, ""},
	// Symmetric NAT facing an open router: the open side learns the hard
	// side's per-destination port from its pings.
	{"hard-none", StandardOptions{NATA: NATHard}, true, "the public side learns the symmetric side's port from its ping", 0, ""},
	{"cgnat-easy", StandardOptions{NATA: NATCGNAT, NATB: NATEasy}, true, "double NAT, both layers endpoint-independent", 0, ""},
	// The symmetric side's port for the restricted side is unknown until
	// its ping arrives, and the restricted NAT drops that ping.
	{"hard-restricted", StandardOptions{NATA: NATHard, NATB: NATRestricted}, false, "symmetric vs port-restricted: no port to aim at", 0, ""},
	// Both symmetric: neither side can predict the other's port.
	{"hard-hard", StandardOptions{NATA: NATHard, NATB: NATHard}, false, "symmetric on both sides", 0, ""},
	// No UDP at all on one side: only the relay over TCP 443 works.
	{"noudp-easy", StandardOptions{NATA: NATNoUDP, NATB: NATEasy}, false, "UDP blocked", 0, ""},
	{"noudp-none", StandardOptions{NATA: NATNoUDP}, false, "UDP blocked", 0, ""},
	{"ipv6only", StandardOptions{IPv6Only: true}, true, "IPv6, no NAT", 0, ""},
}
