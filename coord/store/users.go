package store

import (
	"context"
	"database/sql"
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
		_, err = tx.ExecContext(ctx, `INSERT INTO users(name, email, created) VALUES(?,?,?)`, u.Name, u.Email, u.Created.UnixNano())
		return err
	})
	if err != nil {
		return u, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

func (s *SQLite) Users(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, email, created FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		var created int64
		if err := rows.Scan(&u.Name, &u.Email, &created); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
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
		_, err = tx.ExecContext(ctx, `DELETE FROM preauth_keys WHERE user_name = ?`, name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete user: %w", err)
	}
	return ids, nil
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
