package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/lanmesh/lanmesh/coord/store"
)

// The audit seam. Every state-changing admin action, whoever asks for it
// (the admin socket, an API key on the HTTPS admin API, the web admin,
// coord itself), is a method of Admin taking the Actor who asked; the
// method does the change and appends one audit event (who, what, target,
// when, from where, result) to the store. Logins and logouts are audited
// from login.go through Server.Audit. Reads are not audited, except
// every use of an API key (apiauth.go).

// ActorKind says how an actor reached coord.
type ActorKind string

const (
	ActorSocket ActorKind = "socket" // the admin unix socket; Name is the peer's uid
	ActorAPIKey ActorKind = "apikey" // an API key on the HTTPS admin API; Name is the key's ID
	ActorWeb    ActorKind = "web"    // a person signed in to the web admin; Name is their user
	ActorUser   ActorKind = "user"   // a person logging in through an IdP; Name is the user, or the IdP subject if refused
	ActorNode   ActorKind = "node"   // a node acting on itself (logout); Name is the node
	ActorSystem ActorKind = "system" // coord itself (expiry, IdP refresh checks); Name says which part
)

// Actor is who asks for an admin action, and from where.
type Actor struct {
	Kind   ActorKind
	Name   string
	Source string // remote address ("198.18.0.5:41234"), or "unix socket"
}

func (a Actor) String() string { return string(a.Kind) + ":" + a.Name }

// Audit results.
const (
	ResultOK      = "ok"
	ResultRefused = "refused" // the actor's mistake or lack of rights (4xx)
	ResultError   = "error"   // coord failed (5xx)
)

type actorKey struct{}

// WithActor returns ctx carrying a, for handlers that take the actor from
// the request (AdminHandler).
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor WithActor stored, or ok false.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

// AdminError is an admin action refused for a reason the caller can fix;
// Code is the HTTP status the admin API answers with.
type AdminError struct {
	Code int
	Msg  string
}

func (e *AdminError) Error() string { return e.Msg }

func badRequest(format string, args ...any) error {
	return &AdminError{Code: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// ErrorStatus maps an error of an Admin method to the HTTP status and the
// message to show the admin. Internal errors get a generic message (the
// detail is in coord's log): callers show msg as it is.
func ErrorStatus(err error) (code int, msg string) {
	var ae *AdminError
	switch {
	case errors.As(err, &ae):
		return ae.Code, ae.Msg
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrNameTaken), errors.Is(err, store.ErrUserDisabled):
		return http.StatusConflict, err.Error()
	case errors.Is(err, store.ErrNotAdvertised):
		return http.StatusBadRequest, err.Error() + ": the node must advertise it first (lanmesh up --advertise-routes)"
	}
	return http.StatusInternalServerError, "internal error; see coord's log"
}

func resultOf(err error) string {
	if err == nil {
		return ResultOK
	}
	if code, _ := ErrorStatus(err); code < 500 {
		return ResultRefused
	}
	return ResultError
}

// AuditConfig bounds the audit log's growth: events older than Retention
// go, and past MaxEvents the oldest go. Zero fields take
// DefaultAuditRetention and DefaultAuditMaxEvents.
type AuditConfig struct {
	Retention time.Duration
	MaxEvents int
}

const (
	DefaultAuditRetention = 365 * 24 * time.Hour
	DefaultAuditMaxEvents = 1_000_000
	// auditPruneEvery: the log is pruned at start and after this many
	// appends, so it never exceeds MaxEvents by more than this.
	auditPruneEvery = 1000
)

func (c AuditConfig) withDefaults() (AuditConfig, error) {
	if c.Retention < 0 || c.MaxEvents < 0 {
		return c, errors.New("audit: retention and max events must not be negative")
	}
	if c.Retention == 0 {
		c.Retention = DefaultAuditRetention
	}
	if c.MaxEvents == 0 {
		c.MaxEvents = DefaultAuditMaxEvents
	}
	return c, nil
}

// auditLog counts appends between prunes.
type auditLog struct {
	appends atomic.Int64
}

// Audit appends one event: who did action to target, and how it ended
// (err nil: ok). detail is a short explanation; it and target must never
// hold a secret (name keys by ID). A failed append is logged, not
// returned: the action it records has already happened.
func (s *Server) Audit(ctx context.Context, who Actor, action, target, detail string, err error) {
	markAudited(ctx)
	e := store.AuditEvent{
		Time: s.cfg.Now(), ActorKind: string(who.Kind), Actor: who.Name, Source: who.Source,
		Action: action, Target: target, Result: resultOf(err), Detail: detail,
	}
	if err != nil {
		_, msg := ErrorStatus(err)
		if detail != "" {
			msg = detail + ": " + msg
		}
		e.Detail = msg
	}
	// The event is written even if the request was cancelled just after
	// the change: a change without its event is the failure to avoid.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, aerr := s.st.AppendAudit(wctx, e); aerr != nil {
		s.log.Error("audit: event not stored", "action", action, "actor", who.String(), "target", target, "err", aerr)
	}
	if s.audit.appends.Add(1)%auditPruneEvery == 0 {
		go s.pruneAudit()
	}
}

// pruneAudit applies the retention settings.
func (s *Server) pruneAudit() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := s.st.PruneAudit(ctx, s.cfg.Now().Add(-s.cfg.Audit.Retention), s.cfg.Audit.MaxEvents)
	if err != nil {
		s.log.Error("audit: prune", "err", err)
	} else if n > 0 {
		s.log.Info("audit: pruned old events", "events", n)
	}
}

// AuditEvents reads the audit log, newest first (web admin, audit list).
func (s *Server) AuditEvents(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, error) {
	return s.st.AuditEvents(ctx, q)
}
