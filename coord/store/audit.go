package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// AuditEvent is one entry of the audit log: an admin action or a login,
// who did it, from where, and how it ended. It never holds a secret
// (keys, tokens, cookies): callers name keys by their ID.
type AuditEvent struct {
	ID        int64
	Time      time.Time
	ActorKind string // "socket", "apikey", "web", "user", "node", "system"
	Actor     string // who within the kind: an API key ID, a user, a uid
	Source    string // where from: a remote address, "unix socket"
	Action    string // e.g. "user.delete", "login", "apikey.auth"
	Target    string // what it acted on: a user, node, key ID; may be ""
	Result    string // "ok", "denied" (refused: the actor's mistake or lack of rights) or "error"
	Detail    string // a short human explanation; never a secret
}

// AuditQuery selects audit events, newest first.
type AuditQuery struct {
	Since time.Time // zero: from the start
	// Actor keeps events whose actor is Actor, or whose actor kind is
	// Actor ("apikey", "socket", ...). Empty: everyone.
	Actor string
	// BeforeID pages back: only events with a smaller ID. 0: the newest.
	BeforeID int64
	Limit    int // at most this many; 0 or more than MaxAuditQuery: MaxAuditQuery
}

// MaxAuditQuery caps one AuditEvents answer.
const MaxAuditQuery = 10000

// maxAuditField caps each text field of a stored event, so a hostile
// value (a long node name in a failed request) cannot grow the log by
// more than a bounded amount per event.
const maxAuditField = 512

func clip(s string) string {
	if len(s) <= maxAuditField {
		return s
	}
	i := maxAuditField
	for i > 0 && !utf8.RuneStart(s[i]) {
		i-- // do not cut a UTF-8 sequence in half
	}
	return s[:i] + "…"
}

func (s *SQLite) AppendAudit(ctx context.Context, e AuditEvent) (AuditEvent, error) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.ActorKind, e.Actor, e.Source, e.Action = clip(e.ActorKind), clip(e.Actor), clip(e.Source), clip(e.Action)
	e.Target, e.Result, e.Detail = clip(e.Target), clip(e.Result), clip(e.Detail)
	res, err := s.db.ExecContext(ctx, `INSERT INTO audit_events(time, actor_kind, actor, source, action, target, result, detail) VALUES(?,?,?,?,?,?,?,?)`,
		e.Time.UnixNano(), e.ActorKind, e.Actor, e.Source, e.Action, e.Target, e.Result, e.Detail)
	if err != nil {
		return e, fmt.Errorf("append audit event: %w", err)
	}
	e.ID, _ = res.LastInsertId()
	return e, nil
}

func (s *SQLite) AuditEvents(ctx context.Context, q AuditQuery) ([]AuditEvent, error) {
	limit := q.Limit
	if limit <= 0 || limit > MaxAuditQuery {
		limit = MaxAuditQuery
	}
	where := []string{"1=1"}
	var args []any
	if !q.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, q.Since.UnixNano())
	}
	if q.Actor != "" {
		where = append(where, "(actor = ? OR actor_kind = ?)")
		args = append(args, q.Actor, q.Actor)
	}
	if q.BeforeID > 0 {
		where = append(where, "id < ?")
		args = append(args, q.BeforeID)
	}
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, `SELECT id, time, actor_kind, actor, source, action, target, result, detail FROM audit_events WHERE `+
		strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEvent
	for rows.Next() {
		var e AuditEvent
		var t int64
		if err := rows.Scan(&e.ID, &t, &e.ActorKind, &e.Actor, &e.Source, &e.Action, &e.Target, &e.Result, &e.Detail); err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		e.Time = time.Unix(0, t)
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *SQLite) PruneAudit(ctx context.Context, before time.Time, keep int) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if !before.IsZero() {
			res, err := tx.ExecContext(ctx, `DELETE FROM audit_events WHERE time < ?`, before.UnixNano())
			if err != nil {
				return err
			}
			d, _ := res.RowsAffected()
			n += d
		}
		if keep > 0 {
			res, err := tx.ExecContext(ctx, `DELETE FROM audit_events WHERE id <= (SELECT id FROM audit_events ORDER BY id DESC LIMIT 1 OFFSET ?)`, keep)
			if err != nil {
				return err
			}
			d, _ := res.RowsAffected()
			n += d
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("prune audit log: %w", err)
	}
	return n, nil
}
