package netmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/coord/policy"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Loader is what the hub reads from the store.
type Loader interface {
	Nodes(ctx context.Context) ([]store.Node, error)
	Settings(ctx context.Context) (store.Settings, error)
}

// PolicyLoader is the rest of what a real store offers. A Loader without
// it (a test double) has no users and the default policy.
type PolicyLoader interface {
	Users(ctx context.Context) ([]store.User, error)
	Policy(ctx context.Context) (store.PolicyVersion, error)
}

// Hub fans change notifications out to streams and builds one Snapshot
// per change, so N streams cost one store read and one policy compile,
// not N. Changed is the store-side input: the server calls it after each
// write (a Postgres LISTEN loop could call it for other replicas' writes).
// Online state and the relay map change without touching the store.
type Hub struct {
	load Loader
	now  func() time.Time

	mu        sync.Mutex
	storeGen  uint64 // bumped by Changed
	liveGen   uint64 // bumped by online changes and SetDERPMap
	subs      map[chan struct{}]struct{}
	online    map[int64]int // open streams per node
	derpMap   *wire.DERPMap
	timer     *time.Timer // fires at the next key expiry
	liveTimer *time.Timer // pending batched online notification
	cur       *Snapshot   // the newest snapshot, for the fast path
	policyErr error

	loadMu sync.Mutex // one snapshot build at a time
	snap   *Snapshot
	seq    uint64
	stored *storedState // last store read and compile
	parsed struct {
		version int64
		p       *policy.Policy
		err     error
	}
}

// storedState is what one store read and compile produced.
type storedState struct {
	gen    uint64
	domain string
	nodes  []store.Node // live ones, sorted by ID
	logins map[string]string
	// expiryOff: stored nodes whose key expiry the policy turns off
	// (expiry.go); their KeyExpiry in nodes is zero.
	expiryOff map[int64]bool
	compiled  *policy.Compiled
	policyV   int64
}

// NewHub returns a hub reading from l. now may be nil (time.Now).
func NewHub(l Loader, now func() time.Time) *Hub {
	if now == nil {
		now = time.Now
	}
	return &Hub{load: l, now: now, storeGen: 1, subs: map[chan struct{}]struct{}{}, online: map[int64]int{}}
}

// Changed says the stored mesh (nodes, users, policy, settings) changed;
// every subscriber wakes up.
func (h *Hub) Changed() {
	h.mu.Lock()
	h.storeGen++
	h.notifyLocked()
	h.mu.Unlock()
}

func (h *Hub) notifyLocked() {
	for c := range h.subs {
		select {
		case c <- struct{}{}:
		default: // already pending; the stream will read the newest snapshot
		}
	}
}

// SetDERPMap sets the relay map every node gets in its full map and, when
// it changes, in a delta.
func (h *Hub) SetDERPMap(m *wire.DERPMap) {
	h.mu.Lock()
	h.derpMap = m
	h.liveGen++
	h.storeGen++ // rare: a fresh snapshot for everyone, no batching
	h.notifyLocked()
	h.mu.Unlock()
}

// Subscribe returns a channel that receives (coalesced) change signals and
// a function that ends the subscription.
func (h *Hub) Subscribe() (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		delete(h.subs, c)
		h.mu.Unlock()
	}
}

// StreamOpened and StreamClosed track which nodes are online; peers learn
// of it as a change.
func (h *Hub) StreamOpened(id int64) { h.setOnline(id, +1) }
func (h *Hub) StreamClosed(id int64) { h.setOnline(id, -1) }

func (h *Hub) setOnline(id int64, d int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	was := h.online[id] > 0
	h.online[id] += d
	if h.online[id] <= 0 {
		delete(h.online, id)
	}
	if was != (h.online[id] > 0) {
		h.liveGen++
		// Batch online flips: after a coord restart thousands of streams
		// reconnect at once, and waking every stream per reconnect
		// would be O(N^2). Peers learn of it within liveBatch.
		if h.liveTimer == nil {
			h.liveTimer = time.AfterFunc(liveBatch, func() {
				h.mu.Lock()
				h.liveTimer = nil
				h.notifyLocked()
				h.mu.Unlock()
			})
		}
	}
}

// Online reports whether node id has a netmap stream open now.
func (h *Hub) Online(id int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.online[id] > 0
}

// liveBatch is how long online changes are collected before streams wake.
const liveBatch = 100 * time.Millisecond

// PolicyError is non-nil when the stored policy could not be used; the
// mesh then runs deny-all (S14: fail closed), never the default policy.
func (h *Hub) PolicyError() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.policyErr
}

// Close stops the expiry timer.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.timer != nil {
		h.timer.Stop()
	}
	if h.liveTimer != nil {
		h.liveTimer.Stop()
	}
}

// Snapshot returns the current snapshot, building it if anything changed.
func (h *Hub) Snapshot(ctx context.Context) (*Snapshot, error) {
	// Fast path without loadMu: after a change thousands of streams ask
	// at once, and queueing them all on one mutex is a convoy.
	// While online flips are being batched (liveTimer pending), the
	// newest snapshot is good enough: the timer wakes every stream when
	// it fires, and only then is a new one built. Without this, each of
	// N reconnecting streams would build its own snapshot: O(N^2).
	h.mu.Lock()
	cur, sg, lg, batching := h.cur, h.storeGen, h.liveGen, h.liveTimer != nil
	h.mu.Unlock()
	if cur != nil && cur.storeGen == sg && (cur.liveGen == lg || batching) {
		return cur, nil
	}
	h.loadMu.Lock()
	defer h.loadMu.Unlock()
	h.mu.Lock()
	storeGen, liveGen, derp := h.storeGen, h.liveGen, h.derpMap
	online := make(map[int64]bool, len(h.online))
	for id := range h.online {
		online[id] = true
	}
	h.mu.Unlock()
	if s := h.snap; s != nil && s.storeGen == storeGen && s.liveGen == liveGen {
		return s, nil
	}
	st := h.stored
	if st == nil || st.gen != storeGen {
		var err error
		if st, err = h.readStore(ctx, storeGen); err != nil {
			return nil, err
		}
		h.stored = st
	}
	h.seq++
	s := build(h.seq, st, online, derp, h.snap)
	s.storeGen, s.liveGen = storeGen, liveGen
	h.snap = s
	h.mu.Lock()
	h.cur = s
	h.mu.Unlock()
	return s, nil
}

// readStore loads the mesh and compiles the policy for its live nodes.
func (h *Hub) readStore(ctx context.Context, gen uint64) (*storedState, error) {
	nodes, err := h.load.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	settings, err := h.load.Settings(ctx)
	if err != nil {
		return nil, err
	}
	var users []store.User
	var pv store.PolicyVersion
	if pl, ok := h.load.(PolicyLoader); ok {
		if users, err = pl.Users(ctx); err != nil {
			return nil, err
		}
		if pv, err = pl.Policy(ctx); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	p, perr := h.policy(pv)
	h.mu.Lock()
	h.policyErr = perr
	h.mu.Unlock()

	now := h.now()
	st := &storedState{gen: gen, domain: settings.Domain, logins: Logins(users), policyV: pv.Version}
	disabled := map[string]bool{}
	for _, u := range users {
		if u.Disabled {
			disabled[u.Name] = true
		}
	}
	var next time.Time
	st.expiryOff = KeyExpiryOff(p, nodes, users)
	for _, n := range nodes {
		if st.expiryOff[n.ID] {
			n.KeyExpiry = time.Time{} // in force: never; the store keeps its expiry
		}
		// A disabled user's nodes are in no netmap and (the relays read
		// the same snapshot) on no relay (S15).
		if n.Expired(now) || disabled[n.User] {
			continue
		}
		if !n.KeyExpiry.IsZero() && (next.IsZero() || n.KeyExpiry.Before(next)) {
			next = n.KeyExpiry
		}
		st.nodes = append(st.nodes, n)
	}
	if !next.IsZero() {
		h.armExpiry(next.Sub(now))
	}
	if st.compiled, err = policy.Compile(p, PolicyNodes(st.nodes, users)); err != nil {
		return nil, fmt.Errorf("compile policy: %w", err)
	}
	return st, nil
}

// denyAll is an empty policy: no rule, so no peers and no traffic.
var denyAll = func() *policy.Policy {
	p, err := policy.Parse("deny-all", []byte("{}"))
	if err != nil {
		panic(err)
	}
	return p
}()

// policy parses a stored version once. Version 0 is "none set": the
// default policy (nil). A stored policy that no longer parses (say,
// after a downgrade) yields deny-all, not the default (S14).
func (h *Hub) policy(pv store.PolicyVersion) (*policy.Policy, error) {
	if pv.Version == 0 {
		return nil, nil
	}
	if h.parsed.version != pv.Version {
		h.parsed.version = pv.Version
		h.parsed.p, h.parsed.err = policy.Parse(fmt.Sprintf("policy-v%d", pv.Version), []byte(pv.Body))
	}
	if h.parsed.err != nil {
		return denyAll, fmt.Errorf("stored policy version %d: %w", pv.Version, h.parsed.err)
	}
	return h.parsed.p, nil
}

// armExpiry makes the hub notice a key expiring, which no write announces.
func (h *Hub) armExpiry(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.timer != nil {
		h.timer.Stop()
	}
	h.timer = time.AfterFunc(d+time.Millisecond, h.Changed)
}

// Logins maps user names to their policy logins.
func Logins(users []store.User) map[string]string {
	m := make(map[string]string, len(users))
	for _, u := range users {
		m[u.Name] = u.Login()
	}
	return m
}

// Roles are the user's roles as policies name them (autogroup:ROLE):
// "admin" for a user with the admin role.
func Roles(u store.User) []string {
	if u.Admin {
		return []string{"admin"}
	}
	return nil
}

// PolicyNodes is the compiler's view of stored nodes. A tagged node is
// its tags' in rules; its user is only its owner (default policy). An
// untagged node carries its user's IdP groups and roles: a user with
// the admin role (store.User.Admin) is "admin", which autogroup:admin
// selects. autogroup:owner selects only the built-in admin user (the
// policy compiler knows it by login): lanmesh has no other owner.
func PolicyNodes(nodes []store.Node, users []store.User) []policy.Node {
	byName := make(map[string]store.User, len(users))
	for _, u := range users {
		byName[u.Name] = u
	}
	out := make([]policy.Node, len(nodes))
	for i, n := range nodes {
		u, ok := byName[n.User]
		login := u.Login()
		if !ok {
			login = "" // a node whose user row is gone selects as nobody's
		}
		pn := policy.Node{
			ID:               wire.NodeID(n.ID),
			Owner:            login,
			Tags:             n.Tags,
			Addresses:        meshPrefixes(n),
			ApprovedRoutes:   n.ApprovedRoutes,
			AdvertisedRoutes: n.AdvertisedRoutes,
		}
		if len(n.Tags) == 0 {
			pn.User = login
			pn.Groups = u.Groups
			pn.Roles = Roles(u)
		}
		out[i] = pn
	}
	return out
}

// ToWire is the netmap form of a stored node. Routes are the stored
// approved ones; snapshots use the compiled routes (autoApprovers
// included) instead.
func ToWire(n store.Node, online bool) wire.Node {
	return wire.Node{
		ID:               wire.NodeID(n.ID),
		Name:             n.Name,
		Key:              n.NodeKey,
		Addresses:        []netip.Prefix{netip.PrefixFrom(n.IPv4, 32), netip.PrefixFrom(n.IPv6, 128)},
		Endpoints:        n.Endpoints,
		Routes:           n.ApprovedRoutes,
		AdvertisedRoutes: n.AdvertisedRoutes,
		User:             n.User,
		Tags:             n.Tags,
		Online:           online,
		KeyExpiry:        n.KeyExpiry,
		HomeRegion:       n.HomeRegion,
	}
}

func meshPrefixes(n store.Node) []netip.Prefix {
	out := make([]netip.Prefix, 0, 2)
	if n.IPv4.IsValid() {
		out = append(out, netip.PrefixFrom(n.IPv4, 32))
	}
	if n.IPv6.IsValid() {
		out = append(out, netip.PrefixFrom(n.IPv6, 128))
	}
	return out
}
