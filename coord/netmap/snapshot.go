package netmap

import (
	"encoding/json"
	"net/netip"
	"sync"
	"unsafe"

	"github.com/lanmesh/lanmesh/coord/policy"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Snapshot is the mesh as every stream should see it at one moment: live
// (not expired, not deleted) nodes, each pre-encoded once, with the
// compiled policy. Streams turn it into per-node messages by comparing
// versions and copying bytes, so a change costs O(peers) cheap steps per
// stream, never a JSON encode per (stream, peer) pair.
type Snapshot struct {
	Gen     uint64 // increases with every snapshot
	Domain  string
	Nodes   []wire.Node // sorted by ID; Routes are the compiled routes; LANHosts the valid ones
	DERPMap *wire.DERPMap
	// PolicyVersion is the stored policy in force; 0 is the default.
	PolicyVersion int64

	storeGen, liveGen uint64
	byID              map[wire.NodeID]int
	entries           []entry // parallel to Nodes
	compiled          *policy.Compiled
	stored            *storedState
	online            map[int64]bool
	enc               *encCache
}

// entry is the per-node part of a snapshot that streams share.
type entry struct {
	json   []byte // the node without LANHosts
	ver    uint64 // Gen of the snapshot where json last changed
	peers  []wire.NodeID
	result *policy.NodeResult
	addrs  []netip.Addr // mesh addresses, to check LAN host visibility
}

// Node returns the node with id, if it is live.
func (s *Snapshot) Node(id wire.NodeID) (wire.Node, bool) {
	i, ok := s.byID[id]
	if !ok {
		return wire.Node{}, false
	}
	return s.Nodes[i], true
}

// Peers returns the IDs of the peers id may see (S4), sorted; shared,
// do not modify.
func (s *Snapshot) Peers(id wire.NodeID) []wire.NodeID {
	i, ok := s.byID[id]
	if !ok {
		return nil
	}
	return s.entries[i].peers
}

// Filter returns the packet filter of node id.
func (s *Snapshot) Filter(id wire.NodeID) (wire.PacketFilter, bool) {
	i, ok := s.byID[id]
	if !ok {
		return wire.PacketFilter{}, false
	}
	return s.entries[i].result.Filter, true
}

// build makes a snapshot from stored state and online flags, reusing the
// previous snapshot's encodings and peer lists where nothing changed.
func build(gen uint64, st *storedState, online map[int64]bool, derp *wire.DERPMap, prev *Snapshot) *Snapshot {
	s := &Snapshot{
		Gen: gen, Domain: st.domain, DERPMap: derp, PolicyVersion: st.policyV,
		byID:     make(map[wire.NodeID]int, len(st.nodes)),
		compiled: st.compiled,
		Nodes:    make([]wire.Node, 0, len(st.nodes)),
		entries:  make([]entry, 0, len(st.nodes)),
		enc:      &encCache{m: map[sliceKey][]byte{}},
		stored:   st,
		online:   online,
	}
	samePolicyRun := prev != nil && prev.compiled == st.compiled
	sameStore := prev != nil && prev.stored == st
	if sameStore {
		s.enc = prev.enc // same compile, same shared slices
	}
	for i, n := range st.nodes {
		id := wire.NodeID(n.ID)
		// Only online flags or the relay map changed: nodes whose flag
		// did not change are copied, not re-encoded.
		if sameStore && prev.online[n.ID] == online[n.ID] && i < len(prev.Nodes) && prev.Nodes[i].ID == id {
			s.byID[id] = len(s.Nodes)
			s.Nodes = append(s.Nodes, prev.Nodes[i])
			s.entries = append(s.entries, prev.entries[i])
			continue
		}
		res, ok := st.compiled.Node(id)
		if !ok {
			continue // cannot happen: every live node was compiled
		}
		w := ToWire(n, online[n.ID])
		w.User = st.logins[n.User]
		w.Routes = res.Routes
		w.LANHosts = validLANHosts(n.LANHosts, res.Routes)
		e := entry{result: res, addrs: []netip.Addr{n.IPv4, n.IPv6}}
		lan := w.LANHosts
		w.LANHosts = nil
		e.json, _ = json.Marshal(w) // wire.Node always marshals
		w.LANHosts = lan
		e.ver = gen
		if prev != nil {
			if i, ok := prev.byID[id]; ok {
				pe := &prev.entries[i]
				if string(pe.json) == string(e.json) {
					e.json, e.ver = pe.json, pe.ver
				}
				if samePolicyRun || pe.result.Sum == res.Sum {
					e.peers = pe.peers
				}
			}
		}
		if e.peers == nil {
			e.peers = res.Peers()
		}
		s.byID[id] = len(s.Nodes)
		s.Nodes = append(s.Nodes, w)
		s.entries = append(s.entries, e)
	}
	return s
}

// maxLANHosts bounds what one router may publish.
const MaxLANHosts = 1024

// validLANHosts keeps the published hosts inside the node's effective
// approved subnet routes (never via an exit route): a router cannot name
// addresses it does not route.
func validLANHosts(hosts []wire.LANHost, routes []netip.Prefix) []wire.LANHost {
	var out []wire.LANHost
	for _, h := range hosts {
		for _, r := range routes {
			if r.Bits() > 0 && r.Contains(h.Addr) {
				out = append(out, h)
				break
			}
		}
	}
	return out
}

// lanHostsFor returns the LAN hosts of peer p that viewer v may reach by
// p's inbound filter: a name is only worth (and only allowed) knowing if
// the policy lets you reach its address.
func (s *Snapshot) lanHostsFor(p, v int) []wire.LANHost {
	hosts := s.Nodes[p].LANHosts
	if len(hosts) == 0 {
		return nil
	}
	rules := s.entries[p].result.Filter.Inbound
	var out []wire.LANHost
	for _, h := range hosts {
		if reachable(rules, s.entries[v].addrs, h.Addr) {
			out = append(out, h)
		}
	}
	return out
}

func reachable(rules []wire.FilterRule, srcs []netip.Addr, dst netip.Addr) bool {
	for i := range rules {
		r := &rules[i]
		if !containsAddr(r.Dst, dst) {
			continue
		}
		for _, a := range srcs {
			if containsAddr(r.Src, a) {
				return true
			}
		}
	}
	return false
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// encCache encodes prefix lists once per snapshot: the compiler shares
// one source slice among all nodes a rule reaches, so a rule with 10,000
// sources is encoded once, not once per node.
type encCache struct {
	mu sync.Mutex
	m  map[sliceKey][]byte
}

type sliceKey struct {
	p *netip.Prefix
	n int
}

// minCached is the list length from which caching pays off.
const minCached = 16

func (c *encCache) prefixes(b []byte, ps []netip.Prefix) []byte {
	if len(ps) < minCached {
		return appendPrefixes(b, ps)
	}
	k := sliceKey{unsafe.SliceData(ps), len(ps)}
	c.mu.Lock()
	enc, ok := c.m[k]
	c.mu.Unlock()
	if !ok {
		enc = appendPrefixes(nil, ps)
		c.mu.Lock()
		c.m[k] = enc
		c.mu.Unlock()
	}
	return append(b, enc...)
}

func appendPrefixes(b []byte, ps []netip.Prefix) []byte {
	b = append(b, '[')
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = p.AppendTo(b)
		b = append(b, '"')
	}
	return append(b, ']')
}

// appendFilter encodes f as encoding/json would (same field names), with
// shared prefix lists encoded once.
func (c *encCache) appendFilter(b []byte, f *wire.PacketFilter) []byte {
	b = append(b, '{')
	first := true
	for _, sec := range []struct {
		name  string
		rules []wire.FilterRule
	}{{"inbound", f.Inbound}, {"forward", f.Forward}} {
		if len(sec.rules) == 0 {
			continue // omitempty
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, sec.name...)
		b = append(b, `":[`...)
		for i := range sec.rules {
			r := &sec.rules[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"src":`...)
			b = c.prefixes(b, r.Src)
			b = append(b, `,"dst":`...)
			b = c.prefixes(b, r.Dst)
			if len(r.Ports) > 0 {
				pb, _ := json.Marshal(r.Ports)
				b = append(b, `,"ports":`...)
				b = append(b, pb...)
			}
			// Same form as encoding/json ([]uint8 is base64 there).
			pb, _ := json.Marshal(r.Protos)
			b = append(b, `,"protos":`...)
			b = append(b, pb...)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(f.Caps) > 0 {
		if !first {
			b = append(b, ',')
		}
		b = append(b, `"caps":[`...)
		for i := range f.Caps {
			g := &f.Caps[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"src":`...)
			b = c.prefixes(b, g.Src)
			cb, _ := json.Marshal(g.Caps) // raw JSON values: always marshals
			b = append(b, `,"caps":`...)
			b = append(b, cb...)
			b = append(b, '}')
		}
		b = append(b, ']')
		first = false
	}
	if len(f.Via) > 0 {
		if !first {
			b = append(b, ',')
		}
		vb, _ := json.Marshal(f.Via) // prefixes and IDs: always marshals
		b = append(b, `"via":`...)
		b = append(b, vb...)
	}
	return append(b, '}')
}
