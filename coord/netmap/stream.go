package netmap

import (
	"encoding/json"
	"hash/fnv"
	"strconv"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// Stream is the state of one node's netmap stream: what it was last sent,
// so each snapshot becomes a delta. Not safe for concurrent use.
type Stream struct {
	self      wire.NodeID
	seq       int64
	sent      bool
	selfVer   uint64
	selfLAN   uint64
	selfCaps  string // the cap_map last sent in self
	resultSum [32]byte
	domain    string
	derp      *wire.DERPMap
	peers     []peerState   // sorted by ID
	peerIDs   []wire.NodeID // the snapshot's shared list peers was made from
}

// peerState is what the node was last told about one peer.
type peerState struct {
	id  wire.NodeID
	ver uint64
	lan uint64 // hash of the LAN hosts this node may see; zero: none
}

// NewStream starts the stream of node self.
func NewStream(self wire.NodeID) *Stream {
	return &Stream{self: self}
}

// Next returns the JSON line (newline included) that brings the node up
// to snap: the full map first, then deltas; nil when nothing changed. ok
// is false when the node itself is gone from snap (deleted or expired):
// its stream must end. The returned bytes are valid until the next call.
func (s *Stream) Next(snap *Snapshot) (line []byte, ok bool) {
	si, ok := snap.byID[s.self]
	if !ok {
		return nil, false
	}
	se := &snap.entries[si]
	b := make([]byte, 0, 512)
	s.seq++
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, s.seq, 10)
	full := !s.sent
	if full {
		b = append(b, `,"full":true`...)
	}
	changed := false

	// Self, with its own valid LAN hosts and its cap_map (only the node
	// itself gets its nodeAttrs).
	selfLAN := sumLAN(snap.Nodes[si].LANHosts)
	selfCaps := se.result.CapMapJSON
	if full || se.ver != s.selfVer || selfLAN != s.selfLAN || string(selfCaps) != s.selfCaps {
		s.selfVer, s.selfLAN, s.selfCaps = se.ver, selfLAN, string(selfCaps)
		b = append(b, `,"self":`...)
		b = appendNode(b, se.json, snap.Nodes[si].LANHosts)
		if len(selfCaps) > 0 {
			b = append(b[:len(b)-1], `,"cap_map":`...)
			b = append(b, selfCaps...)
			b = append(b, '}')
		}
		changed = true
	}
	if full || snap.Domain != s.domain {
		s.domain = snap.Domain
		b = append(b, `,"domain":`...)
		b = strconv.AppendQuote(b, snap.Domain)
		changed = true
	}

	// Peers: a merge of two ID-sorted lists, comparing versions only.
	// When the peer list is the same shared slice as last time (the
	// common case: a change elsewhere), it is updated in place.
	newPeers := se.peers
	inPlace := !full && len(newPeers) == len(s.peerIDs) && len(newPeers) > 0 && &newPeers[0] == &s.peerIDs[0]
	var next []peerState
	if !inPlace {
		next = make([]peerState, 0, len(newPeers))
	}
	var removed []wire.NodeID
	nChanged := 0
	if full {
		b = append(b, `,"peers":[`...)
	}
	old := s.peers
	i := 0
	for k, id := range newPeers {
		if inPlace {
			pi, ok := snap.byID[id]
			if !ok {
				continue
			}
			pe := &snap.entries[pi]
			ps := peerState{id: id, ver: pe.ver}
			var lan []wire.LANHost
			if len(snap.Nodes[pi].LANHosts) > 0 {
				lan = snap.lanHostsFor(pi, si)
				ps.lan = sumLAN(lan)
			}
			if old[k] != ps {
				if nChanged > 0 {
					b = append(b, ',')
				} else {
					b = append(b, `,"peers_changed":[`...)
				}
				b = appendNode(b, pe.json, lan)
				nChanged++
				old[k] = ps
			}
			continue
		}
		for i < len(old) && old[i].id < id {
			removed = append(removed, old[i].id)
			i++
		}
		pi, ok := snap.byID[id]
		if !ok {
			continue
		}
		pe := &snap.entries[pi]
		ps := peerState{id: id, ver: pe.ver}
		var lan []wire.LANHost
		if len(snap.Nodes[pi].LANHosts) > 0 {
			lan = snap.lanHostsFor(pi, si)
			ps.lan = sumLAN(lan)
		}
		had := i < len(old) && old[i].id == id
		if full || !had || old[i] != ps {
			if nChanged > 0 {
				b = append(b, ',')
			} else if !full {
				b = append(b, `,"peers_changed":[`...)
			}
			b = appendNode(b, pe.json, lan)
			nChanged++
		}
		if had {
			i++
		}
		next = append(next, ps)
	}
	if !inPlace {
		for ; i < len(old); i++ {
			removed = append(removed, old[i].id)
		}
		s.peers = next
	}
	s.peerIDs = newPeers
	if full || nChanged > 0 {
		b = append(b, ']')
		changed = true
	}
	if len(removed) > 0 {
		b = append(b, `,"peers_removed":[`...)
		for j, id := range removed {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(id), 10)
		}
		b = append(b, ']')
		changed = true
	}

	// The packet filter: always in the full map (a node without one
	// admits nothing), then whenever it changes.
	// The result's sum also covers peers and routes, so a peer change may
	// resend an unchanged filter: harmless, and cheaper than comparing.
	if full || se.result.Sum != s.resultSum {
		s.resultSum = se.result.Sum
		b = append(b, `,"packet_filter":`...)
		b = snap.enc.appendFilter(b, &se.result.Filter)
		changed = true
	}
	if full || (snap.DERPMap != nil && snap.DERPMap != s.derp) {
		if snap.DERPMap != nil {
			db, _ := json.Marshal(snap.DERPMap)
			b = append(b, `,"derp_map":`...)
			b = append(b, db...)
			changed = true
		}
		s.derp = snap.DERPMap
	}
	s.sent = true
	b = append(b, "}\n"...)
	if !changed {
		s.seq--
		return nil, true
	}
	return b, true
}

// KeepAlive returns a keep-alive line.
func (s *Stream) KeepAlive() []byte {
	s.seq++
	return []byte(`{"seq":` + strconv.FormatInt(s.seq, 10) + `,"keep_alive":true}` + "\n")
}

// appendNode writes a node's JSON, adding lan_hosts when there are any.
func appendNode(b, node []byte, lan []wire.LANHost) []byte {
	if len(lan) == 0 {
		return append(b, node...)
	}
	lb, _ := json.Marshal(lan)
	b = append(b, node[:len(node)-1]...)
	b = append(b, `,"lan_hosts":`...)
	b = append(b, lb...)
	return append(b, '}')
}

func sumLAN(hosts []wire.LANHost) uint64 {
	if len(hosts) == 0 {
		return 0
	}
	b, _ := json.Marshal(hosts)
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64() | 1
}
