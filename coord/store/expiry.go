package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SetNodeExpiry implements Store.
func (s *SQLite) SetNodeExpiry(ctx context.Context, id int64, at time.Time) (Node, error) {
	var v int64
	if !at.IsZero() {
		v = at.UnixNano()
	}
	var out Node
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE nodes SET key_expiry = ?, key_revoked = 0 WHERE id = ?`, v, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		out, err = nodeWhere(ctx, tx, `id = ?`, id)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("set key expiry of node %d: %w", id, err)
	}
	return out, nil
}

// Identities implements Store.
func (s *SQLite) Identities(ctx context.Context) ([]Identity, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT i.provider, i.subject, i.user_name, i.secret, i.updated, u.email, u.idp_groups
		FROM identities i JOIN users u ON u.name = i.user_name ORDER BY i.provider, i.subject`)
	if err != nil {
		return nil, fmt.Errorf("list identities: %w", err)
	}
	defer rows.Close()
	var out []Identity
	for rows.Next() {
		var id Identity
		var updated int64
		var groups string
		if err := rows.Scan(&id.Provider, &id.Subject, &id.User, &id.Secret, &updated, &id.Email, &groups); err != nil {
			return nil, fmt.Errorf("list identities: %w", err)
		}
		id.Updated = time.Unix(0, updated)
		if err := json.Unmarshal([]byte(groups), &id.Groups); err != nil {
			return nil, fmt.Errorf("identity %s/%s: groups: %w", id.Provider, id.Subject, err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// RefreshIdentity implements Store. The user's groups change only when
// the identity is still that user's (a concurrent login may have moved
// it).
func (s *SQLite) RefreshIdentity(ctx context.Context, id Identity) error {
	if id.Secret == nil {
		id.Secret = []byte{}
	}
	if id.Groups == nil {
		id.Groups = []string{}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var user string
		err := tx.QueryRowContext(ctx, `SELECT user_name FROM identities WHERE provider = ? AND subject = ?`, id.Provider, id.Subject).Scan(&user)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE identities SET secret = ?, updated = ? WHERE provider = ? AND subject = ?`,
			id.Secret, id.Now.UnixNano(), id.Provider, id.Subject); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE users SET idp_groups = ? WHERE name = ?`, mustJSON(id.Groups), user)
		return err
	})
	if err != nil {
		return fmt.Errorf("refresh identity %s/%s: %w", id.Provider, id.Subject, err)
	}
	return nil
}
