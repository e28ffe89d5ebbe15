package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/coord/store"
)

// DefaultEphemeralTimeout is how long an ephemeral node (joined with a
// key made by "keys create --ephemeral") may be without a netmap stream
// before coord deletes it.
const DefaultEphemeralTimeout = 2 * time.Minute

// reaper deletes ephemeral nodes that stay disconnected: a timer per
// offline ephemeral node, armed when its last stream closes (and when it
// registers or coord starts), disarmed when a stream opens. mu guards
// all following fields.
type reaper struct {
	mu     sync.Mutex
	timers map[int64]*time.Timer
	closed bool
}

func newReaper() *reaper { return &reaper{timers: map[int64]*time.Timer{}} }

// ephemeralOffline arms node n's deletion timer if n is ephemeral and
// has no stream open.
func (s *Server) ephemeralOffline(n store.Node) {
	if !n.Ephemeral || s.hub.Online(n.ID) {
		return
	}
	s.reaper.mu.Lock()
	defer s.reaper.mu.Unlock()
	if s.reaper.closed {
		return
	}
	if t := s.reaper.timers[n.ID]; t != nil {
		t.Stop()
	}
	id := n.ID
	s.reaper.timers[id] = time.AfterFunc(s.cfg.EphemeralTimeout, func() { s.reapEphemeral(id) })
}

// ephemeralOnline disarms node id's deletion timer.
func (s *Server) ephemeralOnline(id int64) {
	s.reaper.mu.Lock()
	defer s.reaper.mu.Unlock()
	if t := s.reaper.timers[id]; t != nil {
		t.Stop()
		delete(s.reaper.timers, id)
	}
}

func (s *Server) closeReaper() {
	s.reaper.mu.Lock()
	defer s.reaper.mu.Unlock()
	s.reaper.closed = true
	for id, t := range s.reaper.timers {
		t.Stop()
		delete(s.reaper.timers, id)
	}
}

// reapEphemeral deletes node id if it is still ephemeral and offline; a
// stream that opened meanwhile keeps it (its close arms a new timer).
func (s *Server) reapEphemeral(id int64) {
	s.reaper.mu.Lock()
	delete(s.reaper.timers, id)
	closed := s.reaper.closed
	s.reaper.mu.Unlock()
	if closed || s.hub.Online(id) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := s.st.Nodes(ctx)
	if err != nil {
		s.log.Error("ephemeral node cleanup: list nodes", "id", id, "err", err)
		s.retryReap(id)
		return
	}
	for _, n := range nodes {
		if n.ID != id {
			continue
		}
		if !n.Ephemeral {
			return // re-registered with a normal key or a login
		}
		if err := s.st.DeleteNode(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("ephemeral node cleanup: delete", "node", n.Name, "id", id, "err", err)
			s.retryReap(id)
			return
		}
		s.hub.Changed()
		s.log.Info("ephemeral node deleted after disconnecting", "node", n.Name, "id", id, "timeout", s.cfg.EphemeralTimeout)
		s.Audit(ctx, Actor{Kind: ActorSystem, Name: "ephemeral", Source: "coord"}, "node.delete", n.Name,
			"ephemeral node disconnected for "+s.cfg.EphemeralTimeout.String(), nil)
		return
	}
}

// retryReap tries a failed deletion again later.
func (s *Server) retryReap(id int64) {
	s.reaper.mu.Lock()
	defer s.reaper.mu.Unlock()
	if s.reaper.closed {
		return
	}
	s.reaper.timers[id] = time.AfterFunc(min(s.cfg.EphemeralTimeout, 30*time.Second), func() { s.reapEphemeral(id) })
}
