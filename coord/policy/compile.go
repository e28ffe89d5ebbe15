package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// Node is what the compiler needs to know of one node of the mesh.
type Node struct {
	ID wire.NodeID
	// User is the login of the device's user. Tagged devices are not
	// their user's in rules (as in Tailscale); Owner then names who
	// created their key, which only the default policy uses.
	User  string
	Owner string
	// Groups are the user's groups at their identity provider (names as
	// the IdP sends them): a rule's group:x also selects the untagged
	// devices of users whose IdP groups include x (docs/identity.md).
	Groups []string
	// Roles are the user's admin roles ("admin", "owner", "it-admin",
	// "network-admin", "billing-admin", "auditor"): autogroup:<role>
	// selects the user's untagged devices.
	Roles            []string
	Tags             []string
	Addresses        []netip.Prefix // mesh /32 and /128
	ApprovedRoutes   []netip.Prefix // approved by an admin
	AdvertisedRoutes []netip.Prefix // offered; autoApprovers may approve them
}

// node is a Node prepared for compiling.
type node struct {
	Node
	idx     int
	tagged  bool
	tags    map[string]bool
	groups  map[string]bool // IdP groups as "group:x"
	owner   string
	addrs   []netip.Prefix
	routes  []netip.Prefix // effective approved routes, exit routes included
	subnets []netip.Prefix // routes without /0: the LANs behind the node
	trimmed []netip.Prefix // subnets without hostScoped ranges (S17)
	exit4   bool
	exit6   bool
}

// Compiled is the result of compiling a policy for the whole mesh.
// Everything in it is deterministic and sorted, so results can be
// compared; Changed lists the nodes whose result differs.
type Compiled struct {
	policy  *Policy
	nodes   []*node
	byID    map[wire.NodeID]int
	results []NodeResult
}

// NodeResult is what one node gets: peers and its packet filter.
type NodeResult struct {
	ID wire.NodeID
	// Routes are the node's approved routes, auto-approved ones included.
	Routes []netip.Prefix
	Filter wire.PacketFilter
	// CapMap is what the policy's nodeAttrs give the node (attributes
	// and node capabilities), CapMapJSON its encoding; nil when none.
	CapMap     wire.CapMap
	CapMapJSON []byte
	// Sum fingerprints peers, routes and filter (caps included): equal
	// sums, equal results.
	Sum [32]byte

	peers      *peerSet
	capEnc     [][]byte // per Filter.Caps entry: its Caps as JSON
	inboundACL []int    // per Filter.Inbound rule: index in Policy.rules(), -1 for the default policy
	forwardACL []int
}

// Peers returns the nodes this node may see, sorted by ID: every node it
// may send to or receive from (S4). The slice is the caller's.
func (r *NodeResult) Peers() []wire.NodeID {
	out := make([]wire.NodeID, 0, len(r.peers.ids))
	for _, id := range r.peers.ids {
		if id != r.ID {
			out = append(out, id)
		}
	}
	return out
}

// HasPeer reports whether id is among Peers.
func (r *NodeResult) HasPeer(id wire.NodeID) bool {
	if id == r.ID {
		return false
	}
	_, ok := slices.BinarySearch(r.peers.ids, id)
	return ok
}

// Node returns the result for one node.
func (c *Compiled) Node(id wire.NodeID) (*NodeResult, bool) {
	i, ok := c.byID[id]
	if !ok {
		return nil, false
	}
	return &c.results[i], true
}

// Nodes lists the compiled node IDs in order.
func (c *Compiled) Nodes() []wire.NodeID {
	out := make([]wire.NodeID, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.ID
	}
	return out
}

// Changed lists nodes whose result differs between old and new, and
// nodes added or removed: the ones coord must send a delta to. old may
// be nil.
func Changed(old, new *Compiled) []wire.NodeID {
	var out []wire.NodeID
	for i := range new.results {
		r := &new.results[i]
		if old == nil {
			out = append(out, r.ID)
			continue
		}
		if o, ok := old.Node(r.ID); !ok || o.Sum != r.Sum {
			out = append(out, r.ID)
		}
	}
	if old != nil {
		for _, n := range old.nodes {
			if _, ok := new.byID[n.ID]; !ok {
				out = append(out, n.ID)
			}
		}
	}
	slices.Sort(out)
	return out
}

// prepare validates and normalizes the input nodes, sorted by ID.
func prepare(p *Policy, in []Node) ([]*node, map[wire.NodeID]int, error) {
	nodes := make([]*node, len(in))
	for i := range in {
		n := &node{Node: in[i], tags: map[string]bool{}}
		for _, t := range n.Tags {
			n.tags[t] = true
		}
		for _, g := range n.Groups {
			if n.groups == nil {
				n.groups = map[string]bool{}
			}
			n.groups["group:"+g] = true
		}
		n.tagged = len(n.Tags) > 0
		n.owner = n.User
		if n.tagged || n.owner == "" {
			n.owner = n.Owner
		}
		var err error
		if n.addrs, err = cleanPrefixes(n.Addresses); err != nil {
			return nil, nil, fmt.Errorf("node %d: addresses: %w", n.ID, err)
		}
		approved, err := cleanPrefixes(n.ApprovedRoutes)
		if err != nil {
			return nil, nil, fmt.Errorf("node %d: approved routes: %w", n.ID, err)
		}
		adv, err := cleanPrefixes(n.AdvertisedRoutes)
		if err != nil {
			return nil, nil, fmt.Errorf("node %d: advertised routes: %w", n.ID, err)
		}
		n.routes = normalizeRoutes(append(approved, p.autoApproved(n, adv)...))
		for _, r := range n.routes {
			switch {
			case r.Bits() == 0 && r.Addr().Is4():
				n.exit4 = true
			case r.Bits() == 0:
				n.exit6 = true
			default:
				n.subnets = append(n.subnets, r)
				n.trimmed = append(n.trimmed, trimHostScoped(r, netip.Prefix{})...)
			}
		}
		nodes[i] = n
	}
	slices.SortFunc(nodes, func(a, b *node) int {
		return cmpInt(int64(a.ID), int64(b.ID))
	})
	byID := make(map[wire.NodeID]int, len(nodes))
	for i, n := range nodes {
		if _, dup := byID[n.ID]; dup {
			return nil, nil, fmt.Errorf("node %d appears twice", n.ID)
		}
		n.idx = i
		byID[n.ID] = i
	}
	return nodes, byID, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// normalizeRoutes sorts and dedups routes without merging: a route is
// a fact about a node, and both a /16 and a /24 inside it may be
// approved.
func normalizeRoutes(rs []netip.Prefix) []netip.Prefix {
	slices.SortFunc(rs, comparePrefix)
	return slices.Compact(rs)
}

func cleanPrefixes(ps []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() {
			return nil, fmt.Errorf("invalid prefix %v", p)
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("IPv4-mapped prefix %v", p)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// autoApproved returns the advertised routes autoApprovers approve for n.
func (p *Policy) autoApproved(n *node, adv []netip.Prefix) []netip.Prefix {
	if p == nil {
		return nil
	}
	var out []netip.Prefix
	for _, r := range adv {
		if r.Bits() == 0 {
			if anyMatches(p.AutoApprovers.exitNode, n) {
				out = append(out, r)
			}
			continue
		}
		for pfx, sels := range p.AutoApprovers.routes {
			// A route inside an auto-approved prefix is approved too.
			if pfx.Bits() <= r.Bits() && pfx.Contains(r.Addr()) && anyMatches(sels, n) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

func anyMatches(sels []selector, n *node) bool {
	for i := range sels {
		if sels[i].matchesNode(n) {
			return true
		}
	}
	return false
}

// bitset is a set of node indexes.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) set(i int)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) or(c bitset) {
	for i := range b {
		b[i] |= c[i]
	}
}
func (b bitset) each(f func(i int)) {
	for w, word := range b {
		for word != 0 {
			t := bits.TrailingZeros64(word)
			f(w*64 + t)
			word &^= 1 << t
		}
	}
}

// peerSet is the sorted peer list shared by nodes of one signature.
type peerSet struct {
	ids []wire.NodeID
	sum [32]byte
}

func hashPrefixes(h interface{ Write([]byte) (int, error) }, ps []netip.Prefix) {
	var buf [18]byte
	for _, p := range ps {
		a := p.Addr().As16()
		copy(buf[:16], a[:])
		buf[16] = byte(p.Bits())
		buf[17] = 0
		if p.Addr().Is4() {
			buf[17] = 4
		}
		h.Write(buf[:])
	}
	h.Write([]byte{0xff})
}

func sumPrefixes(ps []netip.Prefix) [32]byte {
	h := sha256.New()
	hashPrefixes(h, ps)
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// fingerprint computes r.Sum; srcSum gives the precomputed hash of a
// shared source list.
func (r *NodeResult) fingerprint(srcSum func(ps []netip.Prefix) [32]byte) {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(r.ID))
	h.Write(b[:])
	h.Write(r.peers.sum[:])
	hashPrefixes(h, r.Routes)
	for _, list := range [][]wire.FilterRule{r.Filter.Inbound, r.Filter.Forward} {
		for _, fr := range list {
			s := srcSum(fr.Src)
			h.Write(s[:])
			hashPrefixes(h, fr.Dst)
			for _, pr := range fr.Ports {
				binary.BigEndian.PutUint16(b[:2], pr.First)
				binary.BigEndian.PutUint16(b[2:4], pr.Last)
				h.Write(b[:4])
			}
			h.Write(fr.Protos)
			h.Write([]byte{0xfe})
		}
		h.Write([]byte{0xfd})
	}
	for _, v := range r.Filter.Via {
		hashPrefixes(h, []netip.Prefix{v.Dst})
		binary.BigEndian.PutUint64(b[:], uint64(len(v.Peers))) // so entries cannot run into each other
		h.Write(b[:])
		for _, id := range v.Peers {
			binary.BigEndian.PutUint64(b[:], uint64(id))
			h.Write(b[:])
		}
	}
	h.Write([]byte{0xfa})
	h.Write(r.CapMapJSON)
	h.Write([]byte{0xfb})
	for i, g := range r.Filter.Caps {
		s := srcSum(g.Src)
		h.Write(s[:])
		h.Write(r.capEnc[i])
		h.Write([]byte{0xfc})
	}
	h.Sum(r.Sum[:0])
}
