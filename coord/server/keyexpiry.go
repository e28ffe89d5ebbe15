package server

import (
	"context"

	"github.com/lanmesh/lanmesh/coord/store"
)

// nodeExpired reports whether n's key has expired with the policy in
// force: the hub's snapshot decides (netmap/expiry.go), so a node the
// policy's nodeAttrs keep alive (lanmesh:disable-key-expiry) is live
// here exactly when it is in its peers' netmaps.
func (s *Server) nodeExpired(ctx context.Context, n store.Node) (bool, error) {
	if !n.Expired(s.cfg.Now()) {
		return false, nil
	}
	snap, err := s.hub.Snapshot(ctx)
	if err != nil {
		return false, err
	}
	return !snap.KeyExpiryOff(n.ID), nil
}

// keyExpiryOff reports whether the policy in force turns node id's key
// expiry off.
func (s *Server) keyExpiryOff(ctx context.Context, id int64) (bool, error) {
	snap, err := s.hub.Snapshot(ctx)
	if err != nil {
		return false, err
	}
	return snap.KeyExpiryOff(id), nil
}

// expiryOffOrFalse is keyExpiryOff for an admin action's answer, where
// a snapshot that cannot be built (the action succeeded) reads as false.
func (s *Server) expiryOffOrFalse(ctx context.Context, id int64) bool {
	off, _ := s.keyExpiryOff(ctx, id)
	return off
}
