package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Identity is a person as an IdP plugin vouched for them at a login.
type Identity struct {
	Provider string // the plugin's name in coord's plugins config
	Subject  string // unique within the provider
	Email    string // verified email, or ""
	Name     string
	Groups   []string
	Secret   []byte // opaque to coord (e.g. a refresh token); never logged
	Now      time.Time
	// User is the identity's user, set by Identities (LoginIdentity
	// ignores it and picks the user itself).
	User string
	// Updated is when the identity last logged in or refreshed (set by
	// Identities).
	Updated time.Time
}

// LoginIdentity implements Store.
func (s *SQLite) LoginIdentity(ctx context.Context, id Identity) (User, error) {
	if id.Provider == "" || id.Subject == "" {
		return User{}, errors.New("login identity: provider and subject are required")
	}
	if id.Email != "" && CheckEmail(id.Email) != nil {
		id.Email = "" // not usable as a policy login
	}
	if id.Groups == nil {
		id.Groups = []string{}
	}
	if id.Secret == nil {
		id.Secret = []byte{}
	}
	var out User
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var name string
		err := tx.QueryRowContext(ctx, `SELECT user_name FROM identities WHERE provider = ? AND subject = ?`, id.Provider, id.Subject).Scan(&name)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			name = ""
		case err != nil:
			return err
		}
		if name != "" {
			if err := userEnabled(ctx, tx, name); errors.Is(err, ErrNotFound) {
				name = "" // the user was deleted: start over
			} else if err != nil {
				return err
			}
		}
		if name == "" && id.Email != "" {
			// An admin may have made the user (with this email) before
			// the person first logged in: link them, unless another
			// identity already owns that user.
			var linked int
			err := tx.QueryRowContext(ctx, `SELECT u.name, (SELECT COUNT(*) FROM identities i WHERE i.user_name = u.name) FROM users u WHERE u.email = ?`, id.Email).Scan(&name, &linked)
			if errors.Is(err, sql.ErrNoRows) || linked > 0 {
				name = ""
			} else if err != nil {
				return err
			}
		}
		if name == "" {
			if name, err = freeUserName(ctx, tx, id); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO users(name, email, created) VALUES(?,?,?)`, name, id.Email, id.Now.UnixNano()); err != nil {
				return fmt.Errorf("create user %s: %w", name, err)
			}
		}
		if err := userEnabled(ctx, tx, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET idp_groups = ? WHERE name = ?`, mustJSON(id.Groups), name); err != nil {
			return err
		}
		if id.Email != "" {
			if _, err := tx.ExecContext(ctx, `UPDATE users SET email = ? WHERE name = ?`, id.Email, name); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO identities(provider, subject, user_name, secret, updated) VALUES(?,?,?,?,?)
			ON CONFLICT(provider, subject) DO UPDATE SET user_name = excluded.user_name, secret = excluded.secret, updated = excluded.updated`,
			id.Provider, id.Subject, name, id.Secret, id.Now.UnixNano()); err != nil {
			return err
		}
		var created int64
		if err := tx.QueryRowContext(ctx, `SELECT email, created, disabled, admin FROM users WHERE name = ?`, name).Scan(&out.Email, &created, &out.Disabled, &out.Admin); err != nil {
			return err
		}
		out.Name, out.Created, out.Groups = name, time.Unix(0, created), id.Groups
		return nil
	})
	if err != nil {
		return User{}, fmt.Errorf("login identity %s/%s: %w", id.Provider, id.Subject, err)
	}
	return out, nil
}

// freeUserName derives a user name from the identity (email's local part,
// else name, else subject) that no user has yet.
func freeUserName(ctx context.Context, tx *sql.Tx, id Identity) (string, error) {
	base := id.Subject
	if local, _, ok := strings.Cut(id.Email, "@"); ok && local != "" {
		base = local
	} else if id.Name != "" {
		base = id.Name
	}
	var b strings.Builder
	for _, r := range strings.ToLower(base) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	base = strings.Trim(b.String(), "-._")
	if base == "" {
		base = "user"
	}
	if len(base) > 56 {
		base = base[:56]
	}
	for i := 1; i < 1000; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE name = ?`, name).Scan(&n); err != nil {
			return "", err
		}
		if n == 0 {
			return name, nil
		}
	}
	return "", fmt.Errorf("no free user name for %q", base)
}
