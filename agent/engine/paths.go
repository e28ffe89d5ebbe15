package engine

import (
	"net/netip"
	"slices"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// Stopgap path choice until disco: try a peer's candidate endpoints one at
// a time, in the order coord sent them, and keep the first that completes
// a handshake.
const (
	pathTrial = 6 * time.Second // a handshake normally completes in one RTT
	// pathAlive: with a 25 s keepalive, sessions rekey every 2 minutes;
	// a handshake older than this means the path died.
	pathAlive = 180*time.Second + 2*keepaliveSeconds*time.Second
)

type pathPicker struct {
	peers map[key.NodePublic]*pathState
}

type pathState struct {
	cands []netip.AddrPort
	idx   int
	since time.Time // when cands[idx] was chosen
}

func newPathPicker() *pathPicker { return &pathPicker{peers: map[key.NodePublic]*pathState{}} }

// set records k's candidates and returns the endpoint to configure now and
// whether it differs from what was configured before.
func (pp *pathPicker) set(k key.NodePublic, cands []netip.AddrPort, now time.Time) (netip.AddrPort, bool) {
	st, ok := pp.peers[k]
	if ok && slices.Equal(st.cands, cands) {
		return st.current(), false
	}
	st = &pathState{cands: slices.Clone(cands), since: now}
	pp.peers[k] = st
	return st.current(), true
}

// retain forgets peers not in keep.
func (pp *pathPicker) retain(keep map[key.NodePublic]bool) {
	for k := range pp.peers {
		if !keep[k] {
			delete(pp.peers, k)
		}
	}
}

func (st *pathState) current() netip.AddrPort {
	if len(st.cands) == 0 {
		return netip.AddrPort{}
	}
	return st.cands[st.idx]
}

// tick moves every peer whose current candidate has not produced a
// handshake within pathTrial to its next candidate, and returns the moves.
// A peer with a fresh handshake stays where it is, even on a path the peer
// roamed us to.
func (pp *pathPicker) tick(now time.Time, status []PeerStatus) map[key.NodePublic]netip.AddrPort {
	var moves map[key.NodePublic]netip.AddrPort
	for _, ps := range status {
		st, ok := pp.peers[ps.Key]
		if !ok || len(st.cands) < 2 {
			continue
		}
		if !ps.LastHandshake.IsZero() && now.Sub(ps.LastHandshake) < pathAlive {
			st.since = now // alive: a later failure gets a full trial first
			continue
		}
		if now.Sub(st.since) < pathTrial {
			continue
		}
		st.idx = (st.idx + 1) % len(st.cands)
		st.since = now
		if moves == nil {
			moves = map[key.NodePublic]netip.AddrPort{}
		}
		moves[ps.Key] = st.current()
	}
	return moves
}
