package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/netmap"
	"github.com/lanmesh/lanmesh/coord/policy"
	"github.com/lanmesh/lanmesh/coord/store"
)

// maxNodeKeyLifetime bounds what an admin may set per node (a forgotten
// laptop should not be trusted for decades); --off is the explicit way to
// never expire.
const maxNodeKeyLifetime = 10 * 365 * 24 * time.Hour

// SetNodeExpiry sets when a node's key expires (S12): "in" a duration,
// "at" a time, or "off" (never). The hub's expiry timer takes the node
// out of every netmap and relay at that instant (netmap.Hub).
func (a *Admin) SetNodeExpiry(ctx context.Context, who Actor, ref string, req adminapi.ExpiryRequest) (adminapi.Node, error) {
	var out adminapi.Node
	err := a.do(ctx, who, "node.expiry", ref, func() (string, error) {
		at, err := expiryTime(req, a.s.cfg.Now())
		if err != nil {
			return "", badRequest("%s", err)
		}
		n, err := a.s.findNode(ctx, ref)
		if err != nil {
			return "", err
		}
		n, err = a.s.st.SetNodeExpiry(ctx, n.ID, at)
		if err != nil {
			return "", err
		}
		a.s.hub.Changed() // re-arms the hub's expiry timer; an expired node leaves now
		a.s.log.Info("node key expiry set by admin", "node", n.Name, "id", n.ID, "key_expiry", n.KeyExpiry, "by", who.String())
		out = a.s.apiNode(n, false, a.s.expiryOffOrFalse(ctx, n.ID))
		if at.IsZero() {
			return "node " + n.Name + ": never expires", nil
		}
		return "node " + n.Name + ": expires " + at.UTC().Format(time.RFC3339), nil
	})
	return out, err
}

// expiryTime checks an ExpiryRequest: exactly one of In, At, Off.
func expiryTime(req adminapi.ExpiryRequest, now time.Time) (time.Time, error) {
	given := 0
	for _, b := range []bool{req.In != "", !req.At.IsZero(), req.Off} {
		if b {
			given++
		}
	}
	if given != 1 {
		return time.Time{}, errors.New("give exactly one of --in DURATION, --at TIME or --off")
	}
	switch {
	case req.Off:
		return time.Time{}, nil
	case req.In != "":
		d, err := time.ParseDuration(req.In)
		if err != nil || d < 0 || d > maxNodeKeyLifetime {
			return time.Time{}, fmt.Errorf("--in %q: want a duration from 0s up to %v, e.g. 10s, 12h or 720h", req.In, maxNodeKeyLifetime)
		}
		return now.Add(d), nil
	}
	if req.At.After(now.Add(maxNodeKeyLifetime)) {
		return time.Time{}, fmt.Errorf("--at %s: more than %v from now; use --off for a key that never expires", req.At.UTC().Format(time.RFC3339), maxNodeKeyLifetime)
	}
	return req.At, nil
}

// errTagOwner is a tag the user may not own.
type errTagOwner struct{ err error }

func (e errTagOwner) Error() string { return e.err.Error() }

// checkTagOwners refuses tags that user may not own under the current
// policy (its tagOwners). With no policy set, the default policy has no
// tagOwners and any well-formed tag is accepted (docs/identity.md).
func (s *Server) checkTagOwners(ctx context.Context, tags []string, user string) error {
	if len(tags) == 0 {
		return nil
	}
	pv, err := s.st.Policy(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	p, err := policy.Parse(fmt.Sprintf("policy-v%d", pv.Version), []byte(pv.Body))
	if err != nil {
		// A stored policy that no longer parses runs deny-all (S14): no
		// tag can be checked, so none is granted.
		return errTagOwner{fmt.Errorf("the stored policy (version %d) does not parse, so no tag can be checked: set a valid policy first: %v", pv.Version, err)}
	}
	users, err := s.st.Users(ctx)
	if err != nil {
		return err
	}
	for _, u := range users {
		if u.Name == user {
			if err := p.CheckTagOwners(tags, u.Name, u.Login(), u.Groups, netmap.Roles(u)); err != nil {
				return errTagOwner{err}
			}
			return nil
		}
	}
	return fmt.Errorf("user %q: %w", user, store.ErrNotFound)
}
