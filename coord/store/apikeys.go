package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// API key scopes: what a key may do on the remote admin API.
const (
	ScopeRead  = "read"  // list and read state; change nothing
	ScopeAdmin = "admin" // everything the admin socket can do
)

// APIKey is a stored API key for the remote admin API. Only a hash of
// its secret is kept; the secret is shown once, when it is made.
type APIKey struct {
	ID          string
	Hash        []byte // SHA-256 of the secret
	Scope       string // ScopeRead or ScopeAdmin
	Description string
	CreatedBy   string // who made it, as the audit log names them
	Expiry      time.Time
	Created     time.Time
	Revoked     time.Time // zero: not revoked
	LastUsed    time.Time // zero: never used
}

// Usable reports why k cannot be used at now, or nil.
func (k APIKey) Usable(now time.Time) error {
	switch {
	case !k.Revoked.IsZero():
		return ErrAPIKeyRevoked
	case !now.Before(k.Expiry):
		return ErrAPIKeyExpired
	}
	return nil
}

var (
	ErrAPIKeyRevoked = errors.New("API key was revoked")
	ErrAPIKeyExpired = errors.New("API key expired")
)

func (s *SQLite) CreateAPIKey(ctx context.Context, k APIKey) error {
	if k.Scope != ScopeRead && k.Scope != ScopeAdmin {
		return fmt.Errorf("create API key: scope %q: want %q or %q", k.Scope, ScopeRead, ScopeAdmin)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_keys(id, hash, scope, description, created_by, expiry, created) VALUES(?,?,?,?,?,?,?)`,
		k.ID, k.Hash, k.Scope, k.Description, k.CreatedBy, k.Expiry.UnixNano(), k.Created.UnixNano())
	if err != nil {
		return fmt.Errorf("create API key %s: %w", k.ID, err)
	}
	return nil
}

const apiKeyCols = `id, hash, scope, description, created_by, expiry, created, revoked, last_used`

func scanAPIKey(sc interface{ Scan(...any) error }) (APIKey, error) {
	var k APIKey
	var exp, created, revoked, used int64
	if err := sc.Scan(&k.ID, &k.Hash, &k.Scope, &k.Description, &k.CreatedBy, &exp, &created, &revoked, &used); err != nil {
		return k, err
	}
	k.Expiry, k.Created = time.Unix(0, exp), time.Unix(0, created)
	if revoked != 0 {
		k.Revoked = time.Unix(0, revoked)
	}
	if used != 0 {
		k.LastUsed = time.Unix(0, used)
	}
	return k, nil
}

// APIKey reads one key, with its hash, straight from the database: no
// cache, so a revoke is seen by the next request.
func (s *SQLite) APIKey(ctx context.Context, id string) (APIKey, error) {
	k, err := scanAPIKey(s.db.QueryRowContext(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("API key %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("read API key %q: %w", id, err)
	}
	return k, nil
}

// APIKeys lists every key, oldest first, without hashes.
func (s *SQLite) APIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+apiKeyCols+` FROM api_keys ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("list API keys: %w", err)
		}
		k.Hash = nil
		out = append(out, k)
	}
	return out, rows.Err()
}

func (s *SQLite) RevokeAPIKey(ctx context.Context, id string, now time.Time) (APIKey, error) {
	var k APIKey
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked = 0`, now.UnixNano(), id); err != nil {
			return err
		}
		var err error
		k, err = scanAPIKey(tx.QueryRowContext(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("API key %q: %w", id, ErrNotFound)
		}
		return err
	})
	if err != nil {
		return k, fmt.Errorf("revoke API key: %w", err)
	}
	k.Hash = nil
	return k, nil
}

func (s *SQLite) TouchAPIKey(ctx context.Context, id string, now time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE api_keys SET last_used = ? WHERE id = ?`, now.UnixNano(), id); err != nil {
		return fmt.Errorf("API key %q: record use: %w", id, err)
	}
	return nil
}
