package webadmin

import (
	"net/http"
	"net/url"
	"time"
)

// auditEvent is one event of coord's audit log as its admin API lists it.
type auditEvent struct {
	ID        int64     `json:"id"`
	Time      time.Time `json:"time"`
	ActorKind string    `json:"actor_kind"`
	Actor     string    `json:"actor"`
	Source    string    `json:"source"`
	Action    string    `json:"action"`
	Target    string    `json:"target,omitempty"`
	Result    string    `json:"result"`
	Detail    string    `json:"detail,omitempty"`
}

const pathAudit = "/admin/v1/audit"

func (a *App) auditEvents(r *http.Request, s *session, q url.Values) ([]auditEvent, error) {
	var evs []auditEvent
	err := a.api.Do(apiCtx(s, r), "GET", pathAudit+"?"+q.Encode(), nil, &evs)
	return evs, err
}
