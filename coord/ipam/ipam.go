package ipam

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// CGNAT is the mesh IPv4 range.
var CGNAT = netip.MustParsePrefix("100.64.0.0/10")

// MaxHost is the largest host number that fits in CGNAT.
const MaxHost = 1<<22 - 2

// Usable reports whether host n gives an IPv4 address that does not end in
// .0 or .255: some stacks and firewalls treat those as network or
// broadcast addresses even inside a /10.
func Usable(n uint32) bool {
	if n < 1 || n > MaxHost {
		return false
	}
	last := n & 0xff
	return last != 0 && last != 255
}

// Next returns the first usable host number after n, or false when none is
// left.
func Next(n uint32) (uint32, bool) {
	for c := n + 1; c <= MaxHost; c++ {
		if Usable(c) {
			return c, true
		}
	}
	return 0, false
}

// Addrs returns host n's mesh addresses.
func Addrs(n uint32, ula netip.Prefix) (v4, v6 netip.Addr, err error) {
	if !Usable(n) {
		return v4, v6, fmt.Errorf("host number %d is outside the mesh range", n)
	}
	if !ula.Addr().Is6() || ula.Bits() != 48 {
		return v4, v6, fmt.Errorf("mesh ULA %s is not an IPv6 /48", ula)
	}
	b4 := CGNAT.Addr().As4()
	binary.BigEndian.PutUint32(b4[:], binary.BigEndian.Uint32(b4[:])|n)
	b6 := ula.Masked().Addr().As16()
	binary.BigEndian.PutUint32(b6[12:], n)
	return netip.AddrFrom4(b4), netip.AddrFrom16(b6), nil
}

// NewULA returns a random RFC 4193 /48 (fdXX:XXXX:XXXX::/48).
func NewULA() netip.Prefix {
	var b [16]byte
	b[0] = 0xfd
	if _, err := rand.Read(b[1:6]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), 48)
}
