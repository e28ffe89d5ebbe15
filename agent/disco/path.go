package disco

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// Timing of the path logic. Relay-only peers are probed often because a
// direct path is worth a lot; a direct path is re-checked every 5 s too, so
// an idle dead one (NAT mapping flushed, WAN address changed) is left for
// the relay within about DirectProbeInterval + 2*LivenessTimeout, and one
// carrying data (see Config.Activity) within about 3.5 s. An unanswered
// check is retried at once: one lost packet is not a dead path.
const (
	RelayProbeInterval  = 5 * time.Second
	DirectProbeInterval = 5 * time.Second
	PingTimeout         = 3 * time.Second
	// LivenessTimeout is how long a ping to the path in use may take;
	// SilenceBeforePing is how long data may go out on it unanswered
	// before such a ping. With traffic flowing, a dead path is left within
	// SilenceBeforePing + missesToFallBack*LivenessTimeout (about 3.5 s).
	LivenessTimeout   = time.Second
	SilenceBeforePing = 1500 * time.Millisecond
	// missesToFallBack unanswered pings to the current path end it.
	missesToFallBack = 2
	// pingLearnedTTL: a candidate learned only from a ping's source is
	// dropped when the peer has not pinged from it for this long.
	pingLearnedTTL = time.Minute
	// maxPingLearned caps candidates from ping sources per peer.
	maxPingLearned = 16
	// repingAfter: a candidate is not pinged again sooner than this when a
	// CallMeMaybe or an incoming ping asks for an immediate ping.
	repingAfter = time.Second
	// pingBackAfter rate-limits the ping back to a candidate whose last
	// ping went unanswered, when the peer pings us from it.
	pingBackAfter = 100 * time.Millisecond
)

// Source says where a candidate endpoint came from (a bit set).
type Source uint8

const (
	FromNetmap      Source = 1 << iota // coord's netmap
	FromCallMeMaybe                    // the peer's CallMeMaybe
	FromPing                           // source address of an authenticated ping
)

func (s Source) String() string {
	var out []string
	for _, x := range []struct {
		b Source
		n string
	}{{FromNetmap, "netmap"}, {FromCallMeMaybe, "callmemaybe"}, {FromPing, "ping"}} {
		if s&x.b != 0 {
			out = append(out, x.n)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "+")
}

type candidate struct {
	addr       netip.AddrPort
	src        Source
	lastPingRx time.Time // last authenticated ping from this address
	lastPingTx time.Time
	lastPong   time.Time
	rtt        time.Duration // of the latest pong
	failed     bool          // a ping after lastPong went unanswered
}

// alive: answered, and no ping since then went unanswered.
func (c *candidate) alive() bool { return !c.lastPong.IsZero() && !c.failed }

// peerPath is the path state of one peer. All methods take the time from
// the caller so tests drive it with a fake clock.
type peerPath struct {
	key       key.NodePublic
	region    string
	shared    *sharedKey
	replay    *replayCache
	cands     map[netip.AddrPort]*candidate
	best      netip.AddrPort // invalid: the relay carries traffic
	bestSince time.Time
	misses    int  // consecutive unanswered pings to best
	suspect   bool // best missed a ping: the data plane also uses the relay
	nextRound time.Time
	lastCMM   time.Time
	lastPong  time.Time

	// Ordered punching after a refused punch (hold.go).
	refusedAt time.Time // first refusal since the last hold; zero: none
	holdUntil time.Time // no pings to the peer before then
	waitUntil time.Time // until then, ping only when the peer asks
	holds     uint16    // holds so far with this peer (Hold.Attempt)
	// When our pings and the peer's were first refused before this hold
	// (zero: they were not): who waits after it (Manager.waiter).
	meRefusedAt, peerRefusedAt time.Time
}

func (p *peerPath) interval() time.Duration {
	if p.best.IsValid() {
		return DirectProbeInterval
	}
	return RelayProbeInterval
}

// setSource makes addrs exactly the candidates with source s (others lose
// the bit); candidates left with no source go, unless in use.
func (p *peerPath) setSource(s Source, addrs []netip.AddrPort) (added []netip.AddrPort) {
	want := map[netip.AddrPort]bool{}
	for _, a := range addrs {
		if validEndpoint(a) && len(want) < MaxEndpoints {
			want[a] = true
		}
	}
	for a, c := range p.cands {
		if !want[a] {
			c.src &^= s
		}
	}
	for a := range want {
		c := p.cands[a]
		if c == nil {
			c = &candidate{addr: a}
			p.cands[a] = c
			added = append(added, a)
		}
		c.src |= s
	}
	p.prune()
	slices.SortFunc(added, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return added
}

// notePing records an authenticated ping from src; it reports whether src
// is a new candidate.
func (p *peerPath) notePing(src netip.AddrPort, now time.Time) bool {
	if !validEndpoint(src) {
		return false
	}
	c := p.cands[src]
	isNew := c == nil
	if isNew {
		c = &candidate{addr: src}
		p.cands[src] = c
	}
	c.src |= FromPing
	c.lastPingRx = now
	p.capPingLearned()
	return isNew && p.cands[src] != nil
}

// capPingLearned keeps at most maxPingLearned ping-only candidates,
// dropping the ones the peer pinged from longest ago.
func (p *peerPath) capPingLearned() {
	var only []*candidate
	for _, c := range p.cands {
		if c.src == FromPing && c.addr != p.best {
			only = append(only, c)
		}
	}
	if len(only) <= maxPingLearned {
		return
	}
	slices.SortFunc(only, func(a, b *candidate) int { return a.lastPingRx.Compare(b.lastPingRx) })
	for _, c := range only[:len(only)-maxPingLearned] {
		delete(p.cands, c.addr)
	}
}

// expire ages out ping-learned candidates.
func (p *peerPath) expire(now time.Time) {
	for _, c := range p.cands {
		if c.src&FromPing != 0 && now.Sub(c.lastPingRx) >= pingLearnedTTL {
			c.src &^= FromPing
		}
	}
	p.prune()
}

func (p *peerPath) prune() {
	for a, c := range p.cands {
		if c.src == 0 && a != p.best {
			delete(p.cands, a)
		}
	}
}

// better reports whether challenger c should replace the current best b.
// The rule, kept simple on purpose:
//  1. only candidates that answered their latest ping count;
//  2. lower RTT wins, but IPv6 counts 10% faster than it is, because an
//     IPv6 path has no NAT mapping that can expire under us;
//  3. the path in use is kept unless the challenger beats it by more than
//     10% (measured that way), so jitter does not make the path flap;
//     except while the path is new (chosen less than PingTimeout ago, so
//     from the same probe round): then the round's best simply wins, and
//     a slightly slower IPv6 pong arriving after the IPv4 one still wins.
func better(c, b *candidate, settled bool) bool {
	if b == nil || !b.alive() {
		return true
	}
	if !settled {
		return score(c) < score(b)
	}
	return score(c)*10 < score(b)*9
}

func score(c *candidate) time.Duration {
	if c.addr.Addr().Is6() && !c.addr.Addr().Is4In6() {
		return c.rtt * 9 / 10
	}
	return c.rtt
}

// choose re-evaluates the best path after a pong or a failure; it reports
// whether the path changed.
func (p *peerPath) choose(now time.Time) bool {
	cur := p.cands[p.best]
	if cur != nil && !cur.alive() {
		cur = nil
	}
	settled := now.Sub(p.bestSince) >= PingTimeout
	pick := cur
	// Deterministic order so equal candidates do not flip between runs.
	addrs := make([]netip.AddrPort, 0, len(p.cands))
	for a := range p.cands {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, func(a, b netip.AddrPort) int { return a.Compare(b) })
	for _, a := range addrs {
		c := p.cands[a]
		if !c.alive() || c == pick {
			continue
		}
		if pick == nil || (pick == cur && better(c, cur, settled)) || (pick != cur && score(c) < score(pick)) {
			pick = c
		}
	}
	var next netip.AddrPort
	if pick != nil {
		next = pick.addr
	}
	if next == p.best {
		return false
	}
	wasRelay := !p.best.IsValid()
	p.best, p.bestSince, p.misses = next, now, 0
	if !next.IsValid() || wasRelay {
		// Probe cadence follows the kind of path: start the new one's.
		p.nextRound = now.Add(p.interval())
		if !next.IsValid() {
			p.nextRound = now // look for another path at once
		}
	}
	p.prune()
	return true
}

// Path is where a peer's traffic goes now.
type Path struct {
	Direct netip.AddrPort // valid: straight to this address
	Region string         // the relay region otherwise
}

func (p Path) String() string {
	if p.Direct.IsValid() {
		return "direct " + p.Direct.String()
	}
	if p.Region == "" {
		return "relay"
	}
	return "relay " + p.Region
}

// CandidateStatus is one candidate for status output.
type CandidateStatus struct {
	Addr     netip.AddrPort `json:"addr"`
	Source   string         `json:"source"`
	RTT      time.Duration  `json:"rtt,omitempty"` // of the latest pong; 0 if none
	LastPong time.Time      `json:"last_pong,omitzero"`
	Alive    bool           `json:"alive"`
}

// PeerStatus is what disco knows of one peer.
type PeerStatus struct {
	Key        key.NodePublic    `json:"key"`
	Path       string            `json:"path"` // "direct 198.18.1.2:41641" or "relay fra"
	Direct     netip.AddrPort    `json:"direct,omitzero"`
	Since      time.Time         `json:"since,omitzero"`
	LastPong   time.Time         `json:"last_pong,omitzero"`
	Candidates []CandidateStatus `json:"candidates"`
}

func (p *peerPath) path() Path { return Path{Direct: p.best, Region: p.region} }

func (p *peerPath) status() PeerStatus {
	st := PeerStatus{Key: p.key, Path: p.path().String(), Direct: p.best, Since: p.bestSince, LastPong: p.lastPong}
	for _, c := range p.cands {
		cs := CandidateStatus{Addr: c.addr, Source: c.src.String(), LastPong: c.lastPong, Alive: c.alive()}
		if !c.lastPong.IsZero() {
			cs.RTT = c.rtt
		}
		st.Candidates = append(st.Candidates, cs)
	}
	slices.SortFunc(st.Candidates, func(a, b CandidateStatus) int { return a.Addr.Compare(b.Addr) })
	return st
}
