package testbed

import (
	"errors"
	"fmt"
)

// Addresses of the standard topology. The internet is 198.18.0.0/17 on
// one bridge; 198.18.128.0/17 is kept for carrier (CGNAT) networks and
// 198.19.0.0/16 for home networks, so nothing overlaps the mesh range
// 100.64.0.0/10.
const (
	InternetGW = "198.18.0.1" // the inet namespace's bridge address
	CoordIP    = "198.18.0.2"
	CoordIP6   = "2001:db8::2" // coord's IPv6 address (IPv6 and IPv6Only worlds)
	WANA       = "198.18.1.2"  // router A's public address (its NAT box's when behind one)
	WANB       = "198.18.2.2"
	LANA       = "198.19.1.0/24"
	LANB       = "198.19.2.0/24"
	A1IP       = "198.19.1.10"
	B1IP       = "198.19.2.10"
	RouterALAN = "198.19.1.1"
	RouterBLAN = "198.19.2.1"
)

// StandardOptions pick the variant of the standard topology.
type StandardOptions struct {
	NATA, NATB NATKind // what sits between each router's WAN and the internet
	IPv6       bool    // add 2001:db8:: addresses (routers directly on the internet only)
	// IPv6Only gives the routers' WANs only 2001:db8:: addresses (no IPv4
	// route to the internet at all); coord and the internet bridge keep
	// both families, and coord must be reached at CoordIP6. The LANs stay
	// IPv4. Routers directly on the internet only.
	IPv6Only bool
}

// CoordAddr is the address agents reach coord at in this topology.
func (s *Standard) CoordAddr() string {
	if s.Opts.IPv6Only {
		return CoordIP6
	}
	return CoordIP
}

// Standard is the topology the demo, the end-to-end tests and the
// benchmarks share:
//
//	coord 198.18.0.2 --+-- internet 198.18.0.0/17 --+-- [NAT] -- router-a -- LAN 198.19.1.0/24 -- a1 .10
//	                   +----------------------------+-- [NAT] -- router-b -- LAN 198.19.2.0/24 -- b1 .10
type Standard struct {
	*World
	Opts     StandardOptions
	Internet *Segment
	Inet     *Host // holds the internet bridge; forwards nothing
	Coord    *Host
	RouterA  *Host
	RouterB  *Host
	A1, B1   *Host
	LANSegA  *Segment
	LANSegB  *Segment
	NATBoxes []*Host
}

// NewStandard builds the standard topology, closed by t.Cleanup.
func NewStandard(t TB, opts StandardOptions) *Standard {
	t.Helper()
	w := New(t)
	s, err := BuildStandard(w, opts)
	if err != nil {
		t.Fatalf("testbed: standard topology: %v", err)
	}
	return s
}

// BuildStandard builds the standard topology into an empty world.
func BuildStandard(w *World, opts StandardOptions) (*Standard, error) {
	if (opts.IPv6 || opts.IPv6Only) && (opts.NATA != NATNone || opts.NATB != NATNone) {
		return nil, errors.New("testbed: IPv6 is only wired for routers directly on the internet")
	}
	s := &Standard{World: w, Opts: opts}
	var err error
	if s.Inet, err = w.AddHost("inet"); err != nil {
		return nil, err
	}
	inetAddrs := []string{InternetGW + "/17"}
	if opts.IPv6 || opts.IPv6Only {
		inetAddrs = append(inetAddrs, "2001:db8::1/64")
	}
	if s.Internet, err = w.AddSegment(s.Inet, "br0", inetAddrs...); err != nil {
		return nil, err
	}
	if s.Coord, err = w.AddHost("coord"); err != nil {
		return nil, err
	}
	if err := s.onInternet(s.Coord, "eth0", CoordIP, CoordIP6); err != nil {
		return nil, err
	}
	if s.RouterA, s.A1, s.LANSegA, err = s.site("a", 1, opts.NATA); err != nil {
		return nil, err
	}
	if s.RouterB, s.B1, s.LANSegB, err = s.site("b", 2, opts.NATB); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Standard) v6(v4 string, v6 string) []string {
	if s.Opts.IPv6 {
		return []string{v4, v6}
	}
	return []string{v4}
}

// onInternet attaches h to the internet with a default route to it; an
// empty ip4 (IPv6Only routers) leaves it without IPv4 there.
func (s *Standard) onInternet(h *Host, ifname, ip4, ip6 string) error {
	both := s.Opts.IPv6 || s.Opts.IPv6Only
	var addrs []string
	if ip4 != "" {
		addrs = append(addrs, ip4+"/17")
	}
	if both && ip6 != "" {
		addrs = append(addrs, ip6+"/64")
	}
	if err := s.Internet.Attach(h, ifname, addrs...); err != nil {
		return err
	}
	if ip4 != "" {
		if err := h.AddRoute("default", InternetGW); err != nil {
			return err
		}
	}
	if both && ip6 != "" {
		return h.AddRoute("default", "2001:db8::1")
	}
	return nil
}

// site builds router-<x>, its LAN with host <x>1, and the NAT boxes of
// kind in front of the router.
func (s *Standard) site(x string, i int, kind NATKind) (router, lanHost *Host, lan *Segment, err error) {
	w := s.World
	pub := fmt.Sprintf("198.18.%d.2", i)
	if router, err = w.AddHost("router-" + x); err != nil {
		return
	}
	switch kind {
	case NATNone:
		ip4 := pub
		if s.Opts.IPv6Only {
			ip4 = ""
		}
		err = s.onInternet(router, "wan0", ip4, fmt.Sprintf("2001:db8::%d:2", i))
	case NATEasy, NATHard, NATNoUDP, NATCGNAT, NATRestricted, NATRestrictedReject, NATRestrictedAccept:
		// The box the router sees: its home NAT.
		home, e := w.AddNATBox("nat-"+x, kind)
		if e != nil {
			return nil, nil, nil, e
		}
		s.NATBoxes = append(s.NATBoxes, home)
		if kind == NATCGNAT {
			// The carrier's NAT on the internet, the home NAT on the
			// carrier network 198.18.20<i>.0/24 (inside 198.18.128.0/17).
			cgn, e := w.AddNATBox("cgn-"+x, NATEasy)
			if e != nil {
				return nil, nil, nil, e
			}
			s.NATBoxes = append(s.NATBoxes, cgn)
			if e := s.onInternet(cgn, "wan0", pub, ""); e != nil {
				return nil, nil, nil, e
			}
			carrier := fmt.Sprintf("198.18.%d", 200+i)
			if e := w.Link(cgn, "lan0", []string{carrier + ".1/24"}, home, "wan0", []string{carrier + ".2/24"}); e != nil {
				return nil, nil, nil, e
			}
			if e := home.AddRoute("default", carrier+".1"); e != nil {
				return nil, nil, nil, e
			}
		} else if e := s.onInternet(home, "wan0", pub, ""); e != nil {
			return nil, nil, nil, e
		}
		priv := fmt.Sprintf("198.19.%d", 100+i)
		if err = w.Link(home, "lan0", []string{priv + ".1/24"}, router, "wan0", []string{priv + ".2/24"}); err != nil {
			return
		}
		err = router.AddRoute("default", priv+".1")
	default:
		err = fmt.Errorf("testbed: unknown NAT kind %q", kind)
	}
	if err != nil {
		return
	}
	// A home router forwards between its LAN and everything else.
	if err = router.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return
	}
	if s.Opts.IPv6 {
		if err = router.Sysctl("net.ipv6.conf.all.forwarding", "1"); err != nil {
			return
		}
	}
	if lan, err = w.AddSegment(router, "lan0", s.v6(fmt.Sprintf("198.19.%d.1/24", i), fmt.Sprintf("2001:db8:%d::1/64", i))...); err != nil {
		return
	}
	if lanHost, err = w.AddHost(x + "1"); err != nil {
		return
	}
	if err = lan.Attach(lanHost, "eth0", s.v6(fmt.Sprintf("198.19.%d.10/24", i), fmt.Sprintf("2001:db8:%d::10/64", i))...); err != nil {
		return
	}
	if err = lanHost.AddRoute("default", fmt.Sprintf("198.19.%d.1", i)); err != nil {
		return
	}
	if s.Opts.IPv6 {
		err = lanHost.AddRoute("default", fmt.Sprintf("2001:db8:%d::1", i))
	}
	return
}

// RouterWANIP is the address a router's own WAN interface has (its
// private address when it sits behind a NAT box).
func (s *Standard) RouterWANIP(router *Host) string {
	i, kind := 1, s.Opts.NATA
	if router == s.RouterB {
		i, kind = 2, s.Opts.NATB
	}
	if kind == NATNone {
		if s.Opts.IPv6Only {
			return fmt.Sprintf("2001:db8::%d:2", i)
		}
		return fmt.Sprintf("198.18.%d.2", i)
	}
	return fmt.Sprintf("198.19.%d.2", 100+i)
}
