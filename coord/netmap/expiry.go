package netmap

import (
	"time"

	"github.com/lanmesh/lanmesh/coord/policy"
	"github.com/lanmesh/lanmesh/coord/store"
)

// Key expiry in force. A node's stored KeyExpiry is what an admin or a
// login set; the policy's nodeAttrs may turn it off
// (policy.AttrDisableKeyExpiry) without touching the store. The hub
// decides once per store change, in readStore: a node the policy turns
// off gets a zero KeyExpiry in its snapshot (so peers, the node itself
// and the relays see it as never expiring and the expiry timer ignores
// it), and the snapshot remembers which nodes those are so that coord's
// other checks (map requests, re-registration, node listings) ask it
// rather than the stored expiry alone. When the policy stops giving a
// node the attribute, the next snapshot applies the stored expiry again:
// a node past it leaves every netmap at once.

// KeyExpiryOff lists the nodes whose key expiry p turns off, by ID; nil
// when none. It works on every stored node, expired ones included: the
// policy is what brings those back. A key expired on purpose (logout,
// nodes expire: store.Node.KeyRevoked) stays expired, as with an admin's
// expiry --off.
func KeyExpiryOff(p *policy.Policy, nodes []store.Node, users []store.User) map[int64]bool {
	if !p.UsesAttr(policy.AttrDisableKeyExpiry) {
		return nil
	}
	var off map[int64]bool
	for i, pn := range PolicyNodes(nodes, users) {
		if !nodes[i].KeyExpiry.IsZero() && !nodes[i].KeyRevoked && p.DisablesKeyExpiry(pn) {
			if off == nil {
				off = map[int64]bool{}
			}
			off[nodes[i].ID] = true
		}
	}
	return off
}

// KeyExpiryOff reports whether the policy in force when s was built
// turns node id's key expiry off. Such a node is live whatever its
// stored KeyExpiry says.
func (s *Snapshot) KeyExpiryOff(id int64) bool {
	return s.stored != nil && s.stored.expiryOff[id]
}

// Expired reports whether n's key has expired at now with the policy in
// force when s was built: as n.Expired, but never while the policy
// turns n's expiry off.
func (s *Snapshot) Expired(n store.Node, now time.Time) bool {
	return !s.KeyExpiryOff(n.ID) && n.Expired(now)
}
