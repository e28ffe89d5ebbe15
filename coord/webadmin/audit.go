package webadmin

import (
	"context"
	"net/http"
	"net/url"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/server"
)

// The audit log page reads coord's audit store through the admin API;
// the admin's own changes are audited there by the API (actor web:USER).
// Sign-ins, sign-outs and refused forms are audited here, as only the
// web admin knows how they ended.

func (a *App) auditEvents(r *http.Request, s *session, q url.Values) ([]adminapi.AuditEvent, error) {
	var evs []adminapi.AuditEvent
	err := a.api.Do(apiCtx(s, r), "GET", adminapi.PathAudit+"?"+q.Encode(), nil, &evs)
	return evs, err
}

// audit records one web admin event; refused is the reason it was
// refused ("" when it went through).
func (a *App) audit(ctx context.Context, kind server.ActorKind, user, source, action, target, detail, refused string) {
	var err error
	if refused != "" {
		err = &server.AdminError{Code: http.StatusForbidden, Msg: refused}
	}
	a.cfg.Server.Audit(ctx, server.Actor{Kind: kind, Name: user, Source: source}, action, target, detail, err)
}
