package netmap

import (
	"crypto/sha256"
	"encoding/json"
	"slices"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// PeerFilter returns the peers self may see, from all live nodes (self
// included in all). A policy compiler replaces AllPeers (S4).
type PeerFilter func(self wire.Node, all []wire.Node) []wire.Node

// AllPeers lets every node see every other node.
func AllPeers(self wire.Node, all []wire.Node) []wire.Node {
	out := make([]wire.Node, 0, len(all))
	for _, n := range all {
		if n.ID != self.ID {
			out = append(out, n)
		}
	}
	return out
}

// Stream is the state of one node's netmap stream: what it was last sent,
// so each snapshot becomes a delta. Not safe for concurrent use.
type Stream struct {
	self     wire.NodeID
	filter   PeerFilter
	seq      int64
	sent     bool
	selfHash [32]byte
	domain   string
	peers    map[wire.NodeID][32]byte
}

// NewStream starts the stream of node self. filter nil means AllPeers.
func NewStream(self wire.NodeID, filter PeerFilter) *Stream {
	if filter == nil {
		filter = AllPeers
	}
	return &Stream{self: self, filter: filter, peers: map[wire.NodeID][32]byte{}}
}

// Next returns the message that brings the node up to snap: the full map
// first, then deltas; nil when nothing changed. ok is false when the node
// itself is gone from snap (deleted or expired): its stream must end.
func (s *Stream) Next(snap *Snapshot) (msg *wire.MapMessage, ok bool) {
	self, ok := snap.Node(s.self)
	if !ok {
		return nil, false
	}
	peers := s.filter(self, snap.Nodes)
	if !s.sent {
		s.sent = true
		s.selfHash, s.domain = hashNode(self), snap.Domain
		for _, p := range peers {
			s.peers[p.ID] = hashNode(p)
		}
		return s.msg(&wire.MapMessage{Full: true, Self: &self, Domain: snap.Domain, Peers: nonNil(peers)}), true
	}
	m := &wire.MapMessage{}
	if h := hashNode(self); h != s.selfHash {
		s.selfHash, m.Self = h, &self
	}
	if snap.Domain != s.domain {
		s.domain, m.Domain = snap.Domain, snap.Domain
	}
	seen := make(map[wire.NodeID]bool, len(peers))
	for _, p := range peers {
		seen[p.ID] = true
		if h := hashNode(p); s.peers[p.ID] != h {
			s.peers[p.ID] = h
			m.PeersChanged = append(m.PeersChanged, p)
		}
	}
	for id := range s.peers {
		if !seen[id] {
			delete(s.peers, id)
			m.PeersRemoved = append(m.PeersRemoved, id)
		}
	}
	slices.Sort(m.PeersRemoved)
	if m.Self == nil && m.Domain == "" && m.PeersChanged == nil && m.PeersRemoved == nil {
		return nil, true
	}
	return s.msg(m), true
}

// KeepAlive returns a keep-alive message.
func (s *Stream) KeepAlive() *wire.MapMessage { return s.msg(&wire.MapMessage{KeepAlive: true}) }

func (s *Stream) msg(m *wire.MapMessage) *wire.MapMessage {
	s.seq++
	m.Seq = s.seq
	return m
}

func hashNode(n wire.Node) [32]byte {
	b, _ := json.Marshal(n) // wire.Node always marshals
	return sha256.Sum256(b)
}

func nonNil(n []wire.Node) []wire.Node {
	if n == nil {
		return []wire.Node{}
	}
	return n
}
