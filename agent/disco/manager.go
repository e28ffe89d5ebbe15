package disco

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// Sender puts sealed disco packets on the wire; magicsock implements it
// with its shared UDP socket and its relay client.
type Sender interface {
	SendUDP(pkt []byte, dst netip.AddrPort) error
	SendRelay(pkt []byte, peer key.NodePublic) error
}

// Config sets up a Manager.
type Config struct {
	PrivateKey key.NodePrivate
	Sender     Sender
	Now        func() time.Time // nil: time.Now; tests pass a fake clock
	Logger     *slog.Logger     // nil: quiet
	// OnPathChange, if set, is called (without locks held) when a peer's
	// path changes, so the data plane can move its traffic.
	OnPathChange func(peer key.NodePublic, p Path)
	// Activity, if set, reports when data last went to a peer over its
	// direct path and when anything last came from it. Data sent into
	// silence is the first sign of a dead path (a flushed NAT mapping), so
	// the path is checked at once instead of at the next probe round.
	Activity func(peer key.NodePublic) (sent, recv time.Time)
	// OnSuspect, if set, is called (without locks held) when a peer's
	// direct path missed a liveness ping (true) or proved itself again or
	// was left (false); the data plane also sends over the relay meanwhile
	// so packets keep flowing while disco decides.
	OnSuspect func(peer key.NodePublic, suspect bool)
}

// Peer is what the netmap says about a peer.
type Peer struct {
	Key       key.NodePublic
	Endpoints []netip.AddrPort // candidates from coord
	Region    string           // the peer's home relay region, for status
}

// Replay-cache sizing: a peer pings each of its candidates every 5 s at
// most (plus prompted pings), so 1024 nonces per minute is far above
// normal and still a small, fixed amount of memory per peer.
const (
	replayWindow = time.Minute
	replayMax    = 1024
)

// Errors HandleUDP and HandleRelay return; callers count or log them at
// debug level, they are normal on the internet.
var (
	ErrUnknownPeer  = errors.New("disco: sender is not a peer in the netmap")
	ErrUnsolicited  = errors.New("disco: pong for no ping we sent to that peer recently")
	ErrWrongPongSrc = errors.New("disco: pong from another address than the one pinged")
	ErrRelaySender  = errors.New("disco: relay frame source differs from the sealed sender")
	ErrKeyMismatch  = errors.New("disco: ping names another node key than its sender")
)

// Manager runs disco for all peers: it answers pings, sends probe rounds
// and picks each peer's path. It is safe for concurrent use.
type Manager struct {
	priv   key.NodePrivate
	pub    key.NodePublic
	send   Sender
	now    func() time.Time
	log    *slog.Logger
	onPath func(key.NodePublic, Path)
	act    func(key.NodePublic) (time.Time, time.Time)
	onSus  func(key.NodePublic, bool)

	mu      sync.Mutex
	peers   map[key.NodePublic]*peerPath
	pending map[TxID]pendingPing
	local   []netip.AddrPort
}

type pendingPing struct {
	peer    key.NodePublic
	to      netip.AddrPort
	sent    time.Time
	timeout time.Duration // LivenessTimeout for the path in use, else PingTimeout
}

// New returns a Manager with no peers.
func New(cfg Config) (*Manager, error) {
	if cfg.PrivateKey.IsZero() {
		return nil, errors.New("disco: no node private key")
	}
	if cfg.Sender == nil {
		return nil, errors.New("disco: no sender")
	}
	m := &Manager{
		priv: cfg.PrivateKey, pub: cfg.PrivateKey.Public(), send: cfg.Sender,
		now: cfg.Now, log: cfg.Logger, onPath: cfg.OnPathChange, act: cfg.Activity, onSus: cfg.OnSuspect,
		peers: map[key.NodePublic]*peerPath{}, pending: map[TxID]pendingPing{},
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	return m, nil
}

// outbox collects what to send and announce while the lock is held; flush
// does it after unlocking, so a Sender or callback may call back into m.
type outbox struct {
	pkts     []outPkt
	changes  []pathChange
	suspects []suspectChange
}

type suspectChange struct {
	peer    key.NodePublic
	suspect bool
}

type outPkt struct {
	pkt   []byte
	udp   netip.AddrPort // valid: UDP, else relay to peer
	relay key.NodePublic
}

type pathChange struct {
	peer key.NodePublic
	path Path
}

func (m *Manager) flush(ob *outbox) {
	for _, o := range ob.pkts {
		var err error
		if o.udp.IsValid() {
			err = m.send.SendUDP(o.pkt, o.udp)
		} else {
			err = m.send.SendRelay(o.pkt, o.relay)
		}
		if err != nil {
			m.log.Debug("disco: send", "to", o.udp.String(), "peer", o.relay.ShortString(), "err", err)
		}
	}
	for _, c := range ob.changes {
		m.log.Info("disco: path changed", "peer", c.peer.ShortString(), "path", c.path.String())
		if m.onPath != nil {
			m.onPath(c.peer, c.path)
		}
	}
	for _, c := range ob.suspects {
		m.log.Debug("disco: direct path suspect", "peer", c.peer.ShortString(), "suspect", c.suspect)
		if m.onSus != nil {
			m.onSus(c.peer, c.suspect)
		}
	}
}

// setSuspect records p's suspect state, announcing a change.
func (p *peerPath) setSuspect(v bool, ob *outbox) {
	if p.suspect != v {
		p.suspect = v
		ob.suspects = append(ob.suspects, suspectChange{p.key, v})
	}
}

func (m *Manager) seal(p *peerPath, msg Message) []byte {
	return sealWith(p.shared, m.pub, msg.AppendMarshal(nil))
}

// ping sends a ping to one candidate of p and remembers its TxID.
func (m *Manager) ping(p *peerPath, c *candidate, now time.Time, ob *outbox) {
	if p.holding(now) {
		return // quiet until the failed attempt's NAT state has expired
	}
	var tx TxID
	if _, err := rand.Read(tx[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	timeout := PingTimeout
	if c.addr == p.best {
		// The path in use answers within an RTT; waiting longer only
		// delays the fallback when it died.
		timeout = LivenessTimeout
	}
	m.pending[tx] = pendingPing{peer: p.key, to: c.addr, sent: now, timeout: timeout}
	c.lastPingTx = now
	ob.pkts = append(ob.pkts, outPkt{pkt: m.seal(p, &Ping{TxID: tx, NodeKey: m.pub}), udp: c.addr})
}

// pingSoon pings the candidates at addrs that were not pinged just now.
func (m *Manager) pingSoon(p *peerPath, addrs []netip.AddrPort, now time.Time, ob *outbox) {
	for _, a := range addrs {
		if c := p.cands[a]; c != nil && now.Sub(c.lastPingTx) >= repingAfter {
			m.ping(p, c, now, ob)
		}
	}
}

// round pings every candidate at once and, while on the relay, tells the
// peer our endpoints so it pings us at the same time.
func (m *Manager) round(p *peerPath, now time.Time, ob *outbox) {
	if p.holding(now) {
		p.nextRound = p.holdUntil
		return
	}
	addrs := make([]netip.AddrPort, 0, len(p.cands))
	for a := range p.cands {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, func(a, b netip.AddrPort) int { return a.Compare(b) })
	if !p.waiting(now) {
		for _, a := range addrs {
			m.ping(p, p.cands[a], now, ob)
		}
	}
	if !p.best.IsValid() && len(m.local) > 0 {
		p.lastCMM = now
		ob.pkts = append(ob.pkts, outPkt{pkt: m.seal(p, &CallMeMaybe{Endpoints: m.local}), relay: p.key})
	}
	p.nextRound = now.Add(p.interval())
}

// SetPeers replaces the peer set with the netmap's. New candidates are
// pinged at once; peers no longer listed are forgotten.
func (m *Manager) SetPeers(peers []Peer) {
	var ob outbox
	m.mu.Lock()
	now := m.now()
	keep := map[key.NodePublic]bool{}
	for _, pe := range peers {
		if pe.Key.IsZero() || pe.Key == m.pub {
			continue
		}
		keep[pe.Key] = true
		p := m.peers[pe.Key]
		if p == nil {
			p = &peerPath{
				key: pe.Key, shared: newSharedKey(m.priv, pe.Key),
				replay: newReplayCache(replayWindow, replayMax),
				cands:  map[netip.AddrPort]*candidate{},
			}
			m.peers[pe.Key] = p
		}
		p.region = pe.Region
		added := p.setSource(FromNetmap, pe.Endpoints)
		if !p.nextRound.IsZero() && len(added) > 0 && !p.waiting(now) {
			m.pingSoon(p, added, now, &ob)
			// While on the relay, ask the peer to ping back now: our pings
			// alone die at its NAT until it opens a mapping towards us.
			if !p.best.IsValid() && len(m.local) > 0 && now.Sub(p.lastCMM) >= repingAfter {
				p.lastCMM = now
				ob.pkts = append(ob.pkts, outPkt{pkt: m.seal(p, &CallMeMaybe{Endpoints: m.local}), relay: p.key})
			}
		} // else: a new peer, the next Tick runs its first round
	}
	for k := range m.peers {
		if !keep[k] {
			delete(m.peers, k)
		}
	}
	for tx, pp := range m.pending {
		if !keep[pp.peer] {
			delete(m.pending, tx)
		}
	}
	m.mu.Unlock()
	m.flush(&ob)
}

// SetLocalEndpoints sets our own candidates (STUN-mapped and interface
// addresses), which CallMeMaybe announces. At most MaxEndpoints are used.
func (m *Manager) SetLocalEndpoints(eps []netip.AddrPort) {
	var out []netip.AddrPort
	for _, e := range eps {
		if validEndpoint(e) && !slices.Contains(out, e) && len(out) < MaxEndpoints {
			out = append(out, e)
		}
	}
	m.mu.Lock()
	m.local = out
	m.mu.Unlock()
}

// NetworkChanged re-probes every peer at once (our address may have
// changed, so the current paths may be dead).
func (m *Manager) NetworkChanged() {
	m.mu.Lock()
	for _, p := range m.peers {
		p.nextRound = time.Time{} // a hold still holds: the far NAT's state is the same
	}
	m.mu.Unlock()
	m.Tick()
}

// Tick does what is due: expires unanswered pings (falling back to the
// relay after missesToFallBack on the current path) and runs probe
// rounds. Run calls it; tests call it after moving their clock.
func (m *Manager) Tick() {
	var ob outbox
	m.mu.Lock()
	now := m.now()
	// Expire in send order so retries follow the order of misses.
	txs := make([]TxID, 0, len(m.pending))
	for tx, pp := range m.pending {
		if now.Sub(pp.sent) >= pp.timeout {
			txs = append(txs, tx)
		}
	}
	slices.SortFunc(txs, func(a, b TxID) int { return m.pending[a].sent.Compare(m.pending[b].sent) })
	for _, tx := range txs {
		pp := m.pending[tx]
		delete(m.pending, tx)
		p := m.peers[pp.peer]
		if p == nil {
			continue
		}
		c := p.cands[pp.to]
		if c == nil || c.lastPong.After(pp.sent) {
			continue // gone, or answered by a later ping
		}
		if pp.to != p.best {
			c.failed = true
			continue
		}
		p.misses++
		if p.misses < missesToFallBack {
			p.setSuspect(true, &ob)
			m.ping(p, c, now, &ob) // retry at once: one lost packet is not a dead path
			continue
		}
		c.failed = true
		if p.choose(now) {
			ob.changes = append(ob.changes, pathChange{p.key, p.path()})
			p.setSuspect(false, &ob)
		}
	}
	for _, p := range m.peers {
		m.checkLiveness(p, now, &ob)
		m.checkHold(p, now, &ob)
		p.expire(now)
		if !now.Before(p.nextRound) {
			m.round(p, now, &ob)
		}
	}
	m.mu.Unlock()
	m.flush(&ob)
}

// checkLiveness pings p's direct path at once when data went out on it but
// nothing came back for SilenceBeforePing: with traffic flowing, a dead
// path is then left within SilenceBeforePing + 2*LivenessTimeout rather
// than after the next probe round.
func (m *Manager) checkLiveness(p *peerPath, now time.Time, ob *outbox) {
	if m.act == nil || !p.best.IsValid() {
		return
	}
	c := p.cands[p.best]
	if c == nil || now.Sub(c.lastPingTx) < LivenessTimeout {
		return // a check is under way (or just answered)
	}
	sent, recv := m.act(p.key)
	if p.lastPong.After(recv) {
		recv = p.lastPong
	}
	if !sent.After(recv) || now.Sub(sent) >= SilenceBeforePing || now.Sub(recv) < SilenceBeforePing {
		return // no data, or answered, or idle for a while (the round covers it)
	}
	m.ping(p, c, now, ob)
}

// Run ticks until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Tick()
		}
	}
}

// HandleUDP takes a disco packet that arrived on the UDP socket from src.
func (m *Manager) HandleUDP(pkt []byte, src netip.AddrPort) error {
	return m.handle(pkt, src, key.NodePublic{}, false)
}

// HandleRelay takes a disco packet the relay delivered from peer (the
// relay authenticated peer's key; the sealed sender must be the same).
func (m *Manager) HandleRelay(pkt []byte, from key.NodePublic) error {
	return m.handle(pkt, netip.AddrPort{}, from, true)
}

func (m *Manager) handle(pkt []byte, src netip.AddrPort, relayFrom key.NodePublic, viaRelay bool) error {
	from, err := SenderKey(pkt)
	if err != nil {
		return err
	}
	if viaRelay && from != relayFrom {
		return ErrRelaySender
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	var ob outbox
	m.mu.Lock()
	err = m.handleLocked(pkt, from, src, viaRelay, &ob)
	m.mu.Unlock()
	m.flush(&ob)
	return err
}

func (m *Manager) handleLocked(pkt []byte, from key.NodePublic, src netip.AddrPort, viaRelay bool, ob *outbox) error {
	p := m.peers[from]
	if p == nil {
		return fmt.Errorf("%w: %s", ErrUnknownPeer, from.ShortString()) // no crypto spent on strangers
	}
	nonce, payload, err := openWith(p.shared, pkt)
	if err != nil {
		return err
	}
	now := m.now()
	if err := p.replay.check(nonce, now); err != nil {
		return err
	}
	msg, err := Parse(payload)
	if err != nil {
		return err
	}
	switch msg := msg.(type) {
	case *Ping:
		if msg.NodeKey != from {
			return ErrKeyMismatch
		}
		pong := &Pong{TxID: msg.TxID}
		if viaRelay {
			ob.pkts = append(ob.pkts, outPkt{pkt: m.seal(p, pong), relay: from})
			return nil
		}
		pong.Src = src
		ob.pkts = append(ob.pkts, outPkt{pkt: m.seal(p, pong), udp: src})
		// The peer's ping got through: whatever held our pings is past.
		p.clearHold()
		// The peer reached us from src: ping back there, which opens our
		// NAT towards it when only its pings got through so far.
		p.notePing(src, now)
		if c := p.cands[src]; c != nil && src != p.best && c.lastPong.Before(c.lastPingTx) &&
			now.Sub(c.lastPingTx) >= pingBackAfter {
			// Our last ping there went unanswered, most likely dropped by
			// the peer's NAT before this ping opened it: ping back now
			// rather than at the next round.
			m.ping(p, c, now, ob)
		} else if src != p.best {
			m.pingSoon(p, []netip.AddrPort{src}, now, ob)
		}
		return nil
	case *Pong:
		return m.handlePong(p, msg, src, viaRelay, now, ob)
	case *CallMeMaybe:
		p.setSource(FromCallMeMaybe, msg.Endpoints)
		m.pingSoon(p, msg.Endpoints, now, ob) // nothing while holding
		return nil
	case *Hold:
		if viaRelay {
			m.handleHold(p, msg, now, ob)
		}
		return nil
	}
	return nil
}

func (m *Manager) handlePong(p *peerPath, msg *Pong, src netip.AddrPort, viaRelay bool, now time.Time, ob *outbox) error {
	pp, ok := m.pending[msg.TxID]
	if !ok || pp.peer != p.key || viaRelay {
		return ErrUnsolicited
	}
	if src != pp.to {
		return fmt.Errorf("%w: pinged %s, pong from %s", ErrWrongPongSrc, pp.to, src)
	}
	delete(m.pending, msg.TxID) // accepted once
	c := p.cands[pp.to]
	if c == nil {
		return nil // candidate withdrawn meanwhile
	}
	c.rtt, c.lastPong, c.failed = now.Sub(pp.sent), now, false
	p.lastPong = now
	if pp.to == p.best {
		p.misses = 0
		p.setSuspect(false, ob)
	}
	if p.choose(now) {
		ob.changes = append(ob.changes, pathChange{p.key, p.path()})
		p.setSuspect(false, ob)
	}
	return nil
}

// Path returns the current path to peer; ok is false for an unknown peer.
func (m *Manager) Path(peer key.NodePublic) (Path, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.peers[peer]
	if p == nil {
		return Path{}, false
	}
	return p.path(), true
}

// Status reports every peer, sorted by key.
func (m *Manager) Status() []PeerStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]PeerStatus, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, p.status())
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return slices.Compare(a.Key[:], b.Key[:]) })
	return out
}
