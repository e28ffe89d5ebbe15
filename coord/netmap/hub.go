package netmap

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Loader is what the hub reads from the store.
type Loader interface {
	Nodes(ctx context.Context) ([]store.Node, error)
	Settings(ctx context.Context) (store.Settings, error)
}

// Snapshot is the mesh as every stream should see it at one moment:
// live (not expired, not deleted) nodes only.
type Snapshot struct {
	Gen    uint64
	Domain string
	Nodes  []wire.Node // sorted by ID
	byID   map[wire.NodeID]int
}

// Node returns the node with id, if it is live.
func (s *Snapshot) Node(id wire.NodeID) (wire.Node, bool) {
	i, ok := s.byID[id]
	if !ok {
		return wire.Node{}, false
	}
	return s.Nodes[i], true
}

// Hub fans change notifications out to streams and caches one snapshot
// per change, so N streams cost one store read, not N. Changed is the only
// input: the server calls it after each write, and a Postgres LISTEN loop
// could call it for writes of other replicas.
type Hub struct {
	load Loader
	now  func() time.Time

	mu     sync.Mutex
	gen    uint64
	subs   map[chan struct{}]struct{}
	online map[int64]int // open streams per node
	timer  *time.Timer   // fires at the next key expiry

	loadMu sync.Mutex // one snapshot load at a time
	snap   *Snapshot
}

// NewHub returns a hub reading from l. now may be nil (time.Now).
func NewHub(l Loader, now func() time.Time) *Hub {
	if now == nil {
		now = time.Now
	}
	return &Hub{load: l, now: now, gen: 1, subs: map[chan struct{}]struct{}{}, online: map[int64]int{}}
}

// Changed says the stored mesh changed; every subscriber wakes up.
func (h *Hub) Changed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gen++
	for c := range h.subs {
		select {
		case c <- struct{}{}:
		default: // already pending; the stream will read the newest snapshot
		}
	}
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
	h.online[id] += d
	if h.online[id] <= 0 {
		delete(h.online, id)
	}
	h.mu.Unlock()
	h.Changed()
}

// Close stops the expiry timer.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.timer != nil {
		h.timer.Stop()
	}
}

// Snapshot returns the current snapshot, loading it if the mesh changed.
func (h *Hub) Snapshot(ctx context.Context) (*Snapshot, error) {
	h.loadMu.Lock()
	defer h.loadMu.Unlock()
	h.mu.Lock()
	gen := h.gen
	online := make(map[int64]bool, len(h.online))
	for id := range h.online {
		online[id] = true
	}
	h.mu.Unlock()
	if h.snap != nil && h.snap.Gen == gen {
		return h.snap, nil
	}
	nodes, err := h.load.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	st, err := h.load.Settings(ctx)
	if err != nil {
		return nil, err
	}
	now := h.now()
	s := &Snapshot{Gen: gen, Domain: st.Domain, byID: map[wire.NodeID]int{}}
	var next time.Time
	for _, n := range nodes {
		if n.Expired(now) {
			continue
		}
		if !n.KeyExpiry.IsZero() && (next.IsZero() || n.KeyExpiry.Before(next)) {
			next = n.KeyExpiry
		}
		s.byID[wire.NodeID(n.ID)] = len(s.Nodes)
		s.Nodes = append(s.Nodes, ToWire(n, online[n.ID]))
	}
	h.snap = s
	if !next.IsZero() {
		h.armExpiry(next.Sub(now))
	}
	return s, nil
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

// ToWire is the netmap form of a stored node.
func ToWire(n store.Node, online bool) wire.Node {
	w := wire.Node{
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
	}
	return w
}
