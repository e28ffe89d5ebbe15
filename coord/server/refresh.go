package server

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/plugins/sdk"
)

// DefaultIdPRefreshInterval is how often coord asks each identity's
// provider whether the person may still have access.
const DefaultIdPRefreshInterval = 10 * time.Minute

// refreshTimeout bounds one identity's refresh call.
const refreshTimeout = 30 * time.Second

// RefreshResult counts what one pass of the IdP refresh check did.
type RefreshResult struct {
	Checked  int // identities the providers answered for
	Disabled int // users disabled because their provider refused them
	Failed   int // refresh calls that failed without a refusal (kept)
}

// refreshLoop runs the IdP refresh check every IdPRefreshInterval until
// ctx ends or the server closes.
func (s *Server) refreshLoop(ctx context.Context) {
	if s.cfg.IdPRefreshInterval < 0 || len(s.cfg.LoginProviders) == 0 {
		return
	}
	t := time.NewTicker(s.cfg.IdPRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-t.C:
			s.RefreshIdentities(ctx)
		}
	}
}

// RefreshIdentities asks each stored identity's provider to refresh it
// (plugins/sdk IdP.Refresh). A refusal (sdk.ErrRefused: the refresh token
// was revoked, the account deleted or disabled at the IdP, or the person
// left an allowed group) disables the identity's user: all their nodes
// leave every netmap and relay in one change, as with "users disable"
// (S15). Any other failure (the IdP or the plugin is down) keeps the
// user as is and is retried at the next pass: an IdP outage must not
// cut everyone off. Identities of disabled users and of providers no
// longer configured are skipped. A successful refresh stores the new
// secret (refresh tokens may rotate) and the user's new IdP groups.
func (s *Server) RefreshIdentities(ctx context.Context) RefreshResult {
	var res RefreshResult
	ids, err := s.st.Identities(ctx)
	if err != nil {
		s.log.Error("IdP refresh: list identities", "err", err)
		return res
	}
	users, err := s.st.Users(ctx)
	if err != nil {
		s.log.Error("IdP refresh: list users", "err", err)
		return res
	}
	disabled := map[string]bool{}
	for _, u := range users {
		disabled[u.Name] = u.Disabled
	}
	changed := false
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		if disabled[id.User] {
			continue
		}
		p, ok := s.provider(id.Provider)
		if !ok || id.Provider == "" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, refreshTimeout)
		nid, err := p.Refresh(cctx, sdk.Identity{Subject: id.Subject, Email: id.Email, Groups: id.Groups, Secret: id.Secret})
		cancel()
		switch {
		case errors.Is(err, sdk.ErrRefused):
			u, derr := s.st.SetUserDisabled(ctx, id.User, true)
			if derr != nil {
				s.log.Error("IdP refresh: disable user", "user", id.User, "err", derr)
				res.Failed++
				continue
			}
			disabled[u.Name] = true
			res.Disabled++
			changed = true
			s.hub.Changed() // at once, not after the whole pass
			s.log.Warn("IdP refused the refresh: user disabled, their nodes left the mesh", "user", u.Name, "provider", id.Provider, "reason", err)
			s.Audit(ctx, Actor{Kind: ActorSystem, Name: "idp-refresh", Source: "coord"}, "user.disable", u.Name,
				"provider "+id.Provider+" refused the refresh", nil)
		case err != nil:
			res.Failed++
			s.log.Warn("IdP refresh failed; user kept, retried at the next check", "user", id.User, "provider", id.Provider, "err", err)
		default:
			res.Checked++
			if nid.Groups == nil {
				nid.Groups = []string{}
			}
			if err := s.st.RefreshIdentity(ctx, store.Identity{Provider: id.Provider, Subject: id.Subject, Secret: nid.Secret, Groups: nid.Groups, Now: s.cfg.Now()}); err != nil {
				s.log.Error("IdP refresh: store", "user", id.User, "err", err)
				continue
			}
			if !slices.Equal(nid.Groups, id.Groups) {
				changed = true
				s.hub.Changed() // policies match IdP groups
				s.log.Info("IdP groups changed at refresh", "user", id.User, "provider", id.Provider, "groups", len(nid.Groups))
			}
		}
	}
	if changed {
		s.log.Info("IdP refresh check done", "checked", res.Checked, "disabled", res.Disabled, "failed", res.Failed)
	}
	return res
}
