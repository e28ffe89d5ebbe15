package firewall

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// elemChunk bounds the elements per netlink message: an element list is
// one nested attribute, whose length field has 16 bits.
const elemChunk = 256

// 32-bit registers: concatenated keys are loaded into consecutive ones.
const reg32 = 8 // NFT_REG32_00

// addFilter adds the identity filter chains (mesh_in, mesh_to_lan,
// lan_to_mesh) and their sets to the batch. Each chain is:
//
//	ct state established,related accept
//	ip  saddr . ip  daddr . meta l4proto . th dport @<chain>4_p  accept
//	ip  saddr . ip  daddr . meta l4proto            @<chain>4_np accept
//	ip6 saddr . ip6 daddr . meta l4proto . th dport @<chain>6_p  accept
//	ip6 saddr . ip6 daddr . meta l4proto            @<chain>6_np accept
//	drop
//
// so a denied packet gets no answer, and the protocol is part of every
// match (S3). Ports are matched only for protocols that have them: th
// dport of ICMP would read its checksum.
func addFilter(c *nftables.Conn, t *nftables.Table, p *plan) error {
	for _, name := range chainNames {
		for _, is4 := range []bool{true, false} {
			for _, ported := range []bool{true, false} {
				if err := addSet(c, t, setName(name, is4, ported), is4, ported); err != nil {
					return err
				}
			}
		}
	}
	if err := fillSets(c, t, p, nil); err != nil {
		return err
	}
	for ci, name := range chainNames {
		ch := c.AddChain(&nftables.Chain{Name: name, Table: t})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: join(ctEstablished(), verdict(expr.VerdictAccept))})
		if ci == chainMeshIn {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: join(neighborDiscovery(), verdict(expr.VerdictAccept))})
		}
		for _, is4 := range []bool{true, false} {
			for _, ported := range []bool{true, false} {
				s := &nftables.Set{Table: t, Name: setName(name, is4, ported)}
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: join(lookup(s, is4, ported), verdict(expr.VerdictAccept))})
			}
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: verdict(expr.VerdictDrop)})
	}
	return nil
}

// fillSets adds p's elements to the sets. With old (the contents of
// an existing table) it replaces only the sets that differ: an update
// costs what changed, and the kernel's per-set commit work is skipped
// for the rest.
func fillSets(c *nftables.Conn, t *nftables.Table, p, old *plan) error {
	for ci, name := range chainNames {
		for fi, is4 := range []bool{true, false} {
			for _, ported := range []bool{true, false} {
				elems := p[ci][fi].portless
				if ported {
					elems = p[ci][fi].ported
				}
				s := &nftables.Set{Table: t, Name: setName(name, is4, ported)}
				if old != nil {
					prev := old[ci][fi].portless
					if ported {
						prev = old[ci][fi].ported
					}
					if slices.Equal(prev, elems) {
						continue
					}
					c.FlushSet(s)
				}
				if err := addElements(c, s, ported, elems); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func setName(chain string, is4, ported bool) string {
	fam, kind := "6", "np"
	if is4 {
		fam = "4"
	}
	if ported {
		kind = "p"
	}
	return chain + fam + "_" + kind
}

func addSet(c *nftables.Conn, t *nftables.Table, name string, is4, ported bool) error {
	addr := nftables.TypeIP6Addr
	if is4 {
		addr = nftables.TypeIPAddr
	}
	types := []nftables.SetDatatype{addr, addr, nftables.TypeInetProto}
	if ported {
		types = append(types, nftables.TypeInetService)
	}
	kt, err := nftables.ConcatSetType(types...)
	if err != nil {
		return fmt.Errorf("firewall: set %s: %w", name, err)
	}
	s := &nftables.Set{Table: t, Name: name, KeyType: kt, Concatenation: true, Interval: true}
	if err := c.AddSet(s, nil); err != nil {
		return fmt.Errorf("firewall: add set %s: %w", name, err)
	}
	return nil
}

func addElements(c *nftables.Conn, s *nftables.Set, ported bool, elems []element) error {
	for len(elems) > 0 {
		n := min(len(elems), elemChunk)
		batch := make([]nftables.SetElement, n)
		for i, e := range elems[:n] {
			batch[i] = nftables.SetElement{
				Key:    elemKey(e.src.from, e.dst.from, e.proto, e.ports.first, ported),
				KeyEnd: elemKey(e.src.to, e.dst.to, e.proto, e.ports.last, ported),
			}
		}
		if err := c.SetAddElements(s, batch); err != nil {
			return fmt.Errorf("firewall: set %s: %w", s.Name, err)
		}
		elems = elems[n:]
	}
	return nil
}

// elemKey lays out a key as the registers hold it: each field padded
// to 4 bytes, port in network order.
func elemKey(src, dst netip.Addr, proto uint8, port uint16, ported bool) []byte {
	k := append(src.AsSlice(), dst.AsSlice()...)
	k = append(k, proto, 0, 0, 0)
	if ported {
		k = append(k, byte(port>>8), byte(port), 0, 0)
	}
	return k
}

// lookup loads saddr . daddr . l4proto [. dport] into consecutive
// registers and looks the key up in s.
func lookup(s *nftables.Set, is4, ported bool) []expr.Any {
	nfproto, off, alen := byte(unix.NFPROTO_IPV6), uint32(8), uint32(16)
	if is4 {
		nfproto, off, alen = unix.NFPROTO_IPV4, 12, 4
	}
	regs := alen / 4
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
		&expr.Payload{DestRegister: reg32, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: alen},
		&expr.Payload{DestRegister: reg32 + regs, Base: expr.PayloadBaseNetworkHeader, Offset: off + alen, Len: alen},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32 + 2*regs},
	}
	if ported {
		e = append(e, &expr.Payload{DestRegister: reg32 + 2*regs + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	}
	return append(e, &expr.Lookup{SourceRegister: reg32, SetName: s.Name})
}

func ctEstablished() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// neighborDiscovery matches ICMPv6 router/neighbor solicitations and
// advertisements (types 133-136) with hop limit 255, i.e. from the link
// itself. A WireGuard TUN has no neighbors, but an L2 mesh link (a test
// veth, a future backend) needs them, and they open nothing beyond it.
func neighborDiscovery() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: []byte{133}},
		&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: []byte{136}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 7, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{255}},
	}
}
