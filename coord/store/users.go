package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// DefaultUser owns keys created without a user, and every node of a mesh
// made before users existed: one user's devices see each other under the
// default policy, so the single-family mesh works without any setup.
const DefaultUser = "admin"

// User is a person (or account) that owns nodes.
type User struct {
	Name    string // unique, lower-case letters, digits, '.', '_', '-'
	Email   string // optional; the user's login in policies when set
	Created time.Time
	// Disabled users keep their nodes and keys in the store, but the
	// nodes are in no netmap and on no relay, and nothing of theirs can
	// register (SetUserDisabled). Netmap generation honours it for any
	// source of users (local or, later, SSO).
	Disabled bool
	// Groups are the IdP groups of the user's last login (identities.go).
	Groups []string
	// Admin is the user's role: an admin may use coord's web admin
	// (coord/webadmin). Policies name these users autogroup:admin, as in
	// Tailscale, where roles are set outside the policy file.
	Admin bool
}

// Login is how a policy names the user: the email when set, else
// "name@" (as Headscale does for users without an email).
func (u User) Login() string {
	if u.Email != "" {
		return u.Email
	}
	return u.Name + "@"
}

// PolicyVersion is one stored policy file.
type PolicyVersion struct {
	Version int64
	Body    string
	Created time.Time
}

var userNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CheckUserName validates a user name.
func CheckUserName(name string) error {
	if !userNameRE.MatchString(name) {
		return fmt.Errorf("user name %q: want 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// CheckEmail validates an email as policies accept it: name@domain.
func CheckEmail(email string) error {
	at := strings.IndexByte(email, '@')
	if at <= 0 || at == len(email)-1 || strings.Count(email, "@") != 1 || len(email) > 254 ||
		strings.ContainsAny(email, " \t\r\n:,*/\"\\") {
		return fmt.Errorf("email %q: want name@domain", email)
	}
	return nil
}

func (s *SQLite) CreateUser(ctx context.Context, u User) (User, error) {
	if err := CheckUserName(u.Name); err != nil {
		return u, err
	}
	if u.Email != "" {
		if err := CheckEmail(u.Email); err != nil {
			return u, err
		}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE name = ? OR (email != '' AND lower(email) = lower(?))`, u.Name, u.Email).Scan(&one)
		if err == nil {
			return fmt.Errorf("user %q or email %q: %w", u.Name, u.Email, ErrExists)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO users(name, email, created, admin) VALUES(?,?,?,?)`, u.Name, u.Email, u.Created.UnixNano(), u.Admin)
		return err
	})
	if err != nil {
		return u, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

func (s *SQLite) Users(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, email, created, disabled, idp_groups, admin FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		var created int64
		var groups string
		if err := rows.Scan(&u.Name, &u.Email, &created, &u.Disabled, &groups, &u.Admin); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		if err := json.Unmarshal([]byte(groups), &u.Groups); err != nil {
			return nil, fmt.Errorf("user %s: groups: %w", u.Name, err)
		}
		u.Created = time.Unix(0, created)
		out = append(out, u)
	}
	return out, rows.Err()
}

// DeleteUser removes the user, their keys and nodes at once, so one
// notification takes every one of their nodes out of every netmap (S15).
func (s *SQLite) DeleteUser(ctx context.Context, name string) ([]int64, error) {
	var ids []int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %q: %w", name, ErrNotFound)
		}
		rows, err := tx.QueryContext(ctx, `SELECT id FROM nodes WHERE user_name = ? ORDER BY id`, name)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if _, err := tx.ExecContext(ctx, `DELETE FROM nodes WHERE user_name = ?`, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM identities WHERE user_name = ?`, name); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM preauth_keys WHERE user_name = ?`, name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete user: %w", err)
	}
	return ids, nil
}

// userEnabled fails with ErrUserDisabled (or ErrNotFound) unless the
// user exists and is enabled.
func userEnabled(ctx context.Context, q querier, name string) error {
	var disabled bool
	err := q.QueryRowContext(ctx, `SELECT disabled FROM users WHERE name = ?`, name).Scan(&disabled)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("user %q: %w", name, ErrNotFound)
	case err != nil:
		return err
	case disabled:
		return fmt.Errorf("user %q: %w", name, ErrUserDisabled)
	}
	return nil
}

func (s *SQLite) SetUserDisabled(ctx context.Context, name string, disabled bool) (User, error) {
	var u User
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET disabled = ? WHERE name = ?`, disabled, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %q: %w", name, ErrNotFound)
		}
		u, err = userWhere(ctx, tx, name)
		return err
	})
	if err != nil {
		return u, fmt.Errorf("set user %q disabled=%v: %w", name, disabled, err)
	}
	return u, nil
}

// SetUserAdmin gives the user the admin role or takes it away.
func (s *SQLite) SetUserAdmin(ctx context.Context, name string, admin bool) (User, error) {
	var u User
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET admin = ? WHERE name = ?`, admin, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %q: %w", name, ErrNotFound)
		}
		u, err = userWhere(ctx, tx, name)
		return err
	})
	if err != nil {
		return u, fmt.Errorf("set user %q admin=%v: %w", name, admin, err)
	}
	return u, nil
}

// RenameUser moves the user's nodes and keys to the new name in the same
// transaction, so no node is ever without its user.
func (s *SQLite) RenameUser(ctx context.Context, old, name string) (User, error) {
	if err := CheckUserName(name); err != nil {
		return User{}, err
	}
	var u User
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE name = ?`, name).Scan(&one)
		if err == nil {
			return fmt.Errorf("user %q: %w", name, ErrExists)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE users SET name = ? WHERE name = ?`, name, old)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %q: %w", old, ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET user_name = ? WHERE user_name = ?`, name, old); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE identities SET user_name = ? WHERE user_name = ?`, name, old); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE preauth_keys SET user_name = ? WHERE user_name = ?`, name, old); err != nil {
			return err
		}
		u, err = userWhere(ctx, tx, name)
		return err
	})
	if err != nil {
		return u, fmt.Errorf("rename user %q: %w", old, err)
	}
	return u, nil
}

func userWhere(ctx context.Context, q querier, name string) (User, error) {
	var u User
	var created int64
	err := q.QueryRowContext(ctx, `SELECT name, email, created, disabled, admin FROM users WHERE name = ?`, name).Scan(&u.Name, &u.Email, &created, &u.Disabled, &u.Admin)
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	u.Created = time.Unix(0, created)
	return u, err
}

// RevokePreAuthKey marks the key revoked (once: a second revoke keeps
// the first time). Registration checks it in the transaction that would
// consume the key, so no registration can slip past a revoke that
// committed before it.
func (s *SQLite) RevokePreAuthKey(ctx context.Context, id string, now time.Time) (PreAuthKey, error) {
	var k PreAuthKey
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE preauth_keys SET revoked = ? WHERE id = ? AND revoked = 0`, now.UnixNano(), id)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		var tags string
		var exp, created, revoked int64
		err = tx.QueryRowContext(ctx, `SELECT id, reusable, tags, expiry, used, created, user_name, revoked FROM preauth_keys WHERE id = ?`, id).
			Scan(&k.ID, &k.Reusable, &tags, &exp, &k.Used, &created, &k.User, &revoked)
		if errors.Is(err, sql.ErrNoRows) && n == 0 {
			return fmt.Errorf("auth key %q: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		k.Expiry, k.Created, k.Revoked = time.Unix(0, exp), time.Unix(0, created), time.Unix(0, revoked)
		return json.Unmarshal([]byte(tags), &k.Tags)
	})
	if err != nil {
		return k, fmt.Errorf("revoke auth key: %w", err)
	}
	return k, nil
}

func (s *SQLite) DeletePreAuthKey(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM preauth_keys WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete auth key %q: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("auth key %q: %w", id, ErrNotFound)
	}
	return nil
}

// ExpireNode never moves an expiry later: a key that already expired
// keeps its time.
func (s *SQLite) ExpireNode(ctx context.Context, id int64, now time.Time) (Node, error) {
	var out Node
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET key_expiry = ? WHERE id = ? AND (key_expiry = 0 OR key_expiry > ?)`, now.UnixNano(), id, now.UnixNano()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET key_revoked = 1 WHERE id = ?`, id); err != nil {
			return err
		}
		var err error
		out, err = nodeWhere(ctx, tx, `id = ?`, id)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("expire node %d: %w", id, err)
	}
	return out, nil
}

func (s *SQLite) RenameNode(ctx context.Context, id int64, name string) (Node, error) {
	if DNSLabel(name) != name {
		return Node{}, fmt.Errorf("name %q: want a DNS label (lower-case letters, digits, inner hyphens, at most %d characters)", name, maxLabel)
	}
	var out Node
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM nodes WHERE name = ? AND id != ?`, name, id).Scan(&one)
		if err == nil {
			return fmt.Errorf("%q: %w", name, ErrNameTaken)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE nodes SET name = ? WHERE id = ?`, name, id)
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
		return out, fmt.Errorf("rename node %d: %w", id, err)
	}
	return out, nil
}

func (s *SQLite) SetPolicy(ctx context.Context, body string, now time.Time) (PolicyVersion, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO policies(body, created) VALUES(?,?)`, body, now.UnixNano())
	if err != nil {
		return PolicyVersion{}, fmt.Errorf("store policy: %w", err)
	}
	v, err := res.LastInsertId()
	if err != nil {
		return PolicyVersion{}, fmt.Errorf("store policy: %w", err)
	}
	return PolicyVersion{Version: v, Body: body, Created: now}, nil
}

func (s *SQLite) Policy(ctx context.Context) (PolicyVersion, error) {
	var p PolicyVersion
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT version, body, created FROM policies ORDER BY version DESC LIMIT 1`).Scan(&p.Version, &p.Body, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return p, ErrNotFound
	}
	if err != nil {
		return p, fmt.Errorf("read policy: %w", err)
	}
	p.Created = time.Unix(0, created)
	return p, nil
}

func (s *SQLite) PolicyHistory(ctx context.Context) ([]PolicyVersion, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT version, body, created FROM policies ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("policy history: %w", err)
	}
	defer rows.Close()
	var out []PolicyVersion
	for rows.Next() {
		var p PolicyVersion
		var created int64
		if err := rows.Scan(&p.Version, &p.Body, &created); err != nil {
			return nil, fmt.Errorf("policy history: %w", err)
		}
		p.Created = time.Unix(0, created)
		out = append(out, p)
	}
	return out, rows.Err()
}
