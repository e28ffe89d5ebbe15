package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/coord/ipam"
	"github.com/lanmesh/lanmesh/internal/key"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// SQLite is the embedded Store: one file, WAL mode.
type SQLite struct {
	db *sql.DB
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed, mode 0600) the database at path and
// applies pending migrations.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	f.Close()
	// _txlock=immediate takes the write lock at BEGIN, so two registrations
	// serialize on the lock instead of failing on upgrade (SQLITE_BUSY).
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &SQLite{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := s.initSettings(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// migrations are applied in order; never edit one that has shipped, add a
// new one.
var migrations = []string{
	1: `
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE preauth_keys (
	id TEXT PRIMARY KEY,
	hash BLOB NOT NULL,
	reusable INTEGER NOT NULL,
	tags TEXT NOT NULL,
	expiry INTEGER NOT NULL,
	used INTEGER NOT NULL DEFAULT 0,
	created INTEGER NOT NULL
);
CREATE TABLE nodes (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	machine_key BLOB NOT NULL UNIQUE,
	node_key BLOB NOT NULL,
	name TEXT NOT NULL UNIQUE,
	hostname TEXT NOT NULL,
	os TEXT NOT NULL DEFAULT '',
	host INTEGER NOT NULL UNIQUE,
	ipv4 TEXT NOT NULL UNIQUE,
	ipv6 TEXT NOT NULL UNIQUE,
	user_name TEXT NOT NULL DEFAULT '',
	tags TEXT NOT NULL,
	endpoints TEXT NOT NULL,
	advertised_routes TEXT NOT NULL,
	approved_routes TEXT NOT NULL,
	key_expiry INTEGER NOT NULL DEFAULT 0,
	last_seen INTEGER NOT NULL DEFAULT 0,
	created INTEGER NOT NULL
);`,
	// 2: users own nodes and keys; policy versions; LAN host names.
	// Existing nodes and keys go to the built-in user "admin", so a mesh
	// made before users existed keeps working under the default policy.
	2: `
CREATE TABLE users (
	name TEXT PRIMARY KEY,
	email TEXT NOT NULL DEFAULT '',
	created INTEGER NOT NULL
);
INSERT INTO users(name, email, created) VALUES('admin', '', CAST(strftime('%s','now') AS INTEGER) * 1000000000);
ALTER TABLE preauth_keys ADD COLUMN user_name TEXT NOT NULL DEFAULT 'admin';
UPDATE nodes SET user_name = 'admin' WHERE user_name = '';
ALTER TABLE nodes ADD COLUMN lan_hosts TEXT NOT NULL DEFAULT '[]';
CREATE INDEX nodes_user ON nodes(user_name);
CREATE TABLE policies (
	version INTEGER PRIMARY KEY AUTOINCREMENT,
	body TEXT NOT NULL,
	created INTEGER NOT NULL
);`,
	3: `ALTER TABLE nodes ADD COLUMN home_region INTEGER NOT NULL DEFAULT 0;`,
	// 4: users can be disabled (their nodes leave every netmap and relay)
	// and pre-auth keys revoked (unix nanoseconds; 0: not revoked).
	4: `
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE preauth_keys ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0;`,
	// 5: a node key belongs to one node (S19). Older versions let a
	// machine register with a node key another machine held. Of each set
	// of such rows the oldest node (lowest id, the first registration)
	// keeps the key; the others get a random key nobody holds and expire
	// now, so they leave every netmap and must join again with an auth
	// key and a key of their own.
	5: `
UPDATE nodes SET node_key = randomblob(32), key_expiry = CAST(strftime('%s','now') AS INTEGER) * 1000000000
	WHERE EXISTS (SELECT 1 FROM nodes o WHERE o.node_key = nodes.node_key AND o.id < nodes.id);
CREATE UNIQUE INDEX nodes_node_key ON nodes(node_key);`,
	// 6: people who log in through IdP plugins, and the groups the IdP
	// gave each user at their last login (policies match them).
	6: `
ALTER TABLE users ADD COLUMN idp_groups TEXT NOT NULL DEFAULT '[]';
CREATE TABLE identities (
	provider TEXT NOT NULL,
	subject TEXT NOT NULL,
	user_name TEXT NOT NULL,
	secret BLOB NOT NULL DEFAULT x'',
	updated INTEGER NOT NULL,
	PRIMARY KEY (provider, subject)
);
CREATE INDEX identities_user ON identities(user_name);`,
	// 7: the admin role (docs/identity.md): who may use coord's web admin.
	7: `ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;`,
	// 8: ephemeral pre-auth keys and the nodes that joined with them
	// (deleted soon after they disconnect, coord/server/ephemeral.go).
	8: `
ALTER TABLE preauth_keys ADD COLUMN ephemeral INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN ephemeral INTEGER NOT NULL DEFAULT 0;`,
	// 9: the audit log of admin actions and logins (audit.go), and API
	// keys for the remote admin API (apikeys.go; only a hash of each
	// secret is kept).
	9: `
CREATE TABLE audit_events (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	time INTEGER NOT NULL,
	actor_kind TEXT NOT NULL,
	actor TEXT NOT NULL,
	source TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL,
	result TEXT NOT NULL,
	detail TEXT NOT NULL
);
CREATE INDEX audit_events_time ON audit_events(time);
CREATE TABLE api_keys (
	id TEXT PRIMARY KEY,
	hash BLOB NOT NULL,
	scope TEXT NOT NULL,
	description TEXT NOT NULL,
	created_by TEXT NOT NULL,
	expiry INTEGER NOT NULL,
	created INTEGER NOT NULL,
	revoked INTEGER NOT NULL DEFAULT 0,
	last_used INTEGER NOT NULL DEFAULT 0
);`,
	// 10: a node key expired on purpose (logout, nodes expire), which no
	// policy nodeAttrs bring back (Node.KeyRevoked).
	10: `ALTER TABLE nodes ADD COLUMN key_revoked INTEGER NOT NULL DEFAULT 0;`,
}

func (s *SQLite) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrations table: %w", err)
	}
	var have int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version),0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if have > len(migrations)-1 {
		return fmt.Errorf("database schema version %d is newer than this coord (%d): upgrade lanmesh-coord", have, len(migrations)-1)
	}
	for v := have + 1; v < len(migrations); v++ {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied) VALUES(?,?)`, v, time.Now().Unix())
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %d: %w", v, err)
		}
	}
	return nil
}

func (s *SQLite) initSettings(ctx context.Context) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		// INSERT OR IGNORE keeps the first ULA forever: changing it would
		// renumber every node.
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO settings(name, value) VALUES('ula', ?)`, ipam.NewULA().String()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO settings(name, value) VALUES('domain', 'mesh.internal')`)
		return err
	})
}

// nodeKeyFree refuses a node key that another machine's node holds
// (S19): peers would get two nodes with one key. The UNIQUE index on
// nodes.node_key (migration 5) backs this check up.
func nodeKeyFree(ctx context.Context, tx *sql.Tx, r Registration) error {
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM nodes WHERE node_key = ? AND machine_key != ?`, r.NodeKey[:], r.MachineKey[:]).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("check node key: %w", err)
	}
	return ErrNodeKeyInUse
}

// isUniqueNodeKey reports whether err is SQLite refusing a second row
// with the same node key.
func isUniqueNodeKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed: nodes.node_key")
}

func (s *SQLite) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (s *SQLite) Close() error { return s.db.Close() }

func (s *SQLite) Ping(ctx context.Context) error {
	var one int
	return s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

func (s *SQLite) Settings(ctx context.Context) (Settings, error) {
	var st Settings
	rows, err := s.db.QueryContext(ctx, `SELECT name, value FROM settings`)
	if err != nil {
		return st, fmt.Errorf("read settings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n, v string
		if err := rows.Scan(&n, &v); err != nil {
			return st, fmt.Errorf("read settings: %w", err)
		}
		switch n {
		case "ula":
			if st.ULA, err = netip.ParsePrefix(v); err != nil {
				return st, fmt.Errorf("settings: ula %q: %w", v, err)
			}
		case "domain":
			st.Domain = v
		}
	}
	return st, rows.Err()
}

func (s *SQLite) SetDomain(ctx context.Context, domain string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO settings(name, value) VALUES('domain', ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value`, domain)
	if err != nil {
		return fmt.Errorf("set domain: %w", err)
	}
	return nil
}

func (s *SQLite) CreatePreAuthKey(ctx context.Context, k PreAuthKey) error {
	if k.User == "" {
		k.User = DefaultUser
	}
	var disabled bool
	if err := s.db.QueryRowContext(ctx, `SELECT disabled FROM users WHERE name = ?`, k.User).Scan(&disabled); errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("create auth key: user %q: %w (create it with \"lanmesh-coord users create %s\", or pass --user)", k.User, ErrNotFound, k.User)
	} else if err == nil && disabled {
		return fmt.Errorf("create auth key: user %q: %w (\"lanmesh-coord users enable %s\" first)", k.User, ErrUserDisabled, k.User)
	} else if err != nil {
		return fmt.Errorf("create auth key: %w", err)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO preauth_keys(id, hash, reusable, tags, expiry, used, created, user_name, ephemeral) VALUES(?,?,?,?,?,0,?,?,?)`,
		k.ID, k.Hash, k.Reusable, mustJSON(k.Tags), k.Expiry.UnixNano(), k.Created.UnixNano(), k.User, k.Ephemeral)
	if err != nil {
		return fmt.Errorf("create auth key %s: %w", k.ID, err)
	}
	return nil
}

func (s *SQLite) PreAuthKeys(ctx context.Context) ([]PreAuthKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, reusable, tags, expiry, used, created, user_name, revoked, ephemeral FROM preauth_keys ORDER BY created`)
	if err != nil {
		return nil, fmt.Errorf("list auth keys: %w", err)
	}
	defer rows.Close()
	var out []PreAuthKey
	for rows.Next() {
		var k PreAuthKey
		var tags string
		var exp, created, revoked int64
		if err := rows.Scan(&k.ID, &k.Reusable, &tags, &exp, &k.Used, &created, &k.User, &revoked, &k.Ephemeral); err != nil {
			return nil, fmt.Errorf("list auth keys: %w", err)
		}
		k.Expiry, k.Created = time.Unix(0, exp), time.Unix(0, created)
		if revoked != 0 {
			k.Revoked = time.Unix(0, revoked)
		}
		if err := json.Unmarshal([]byte(tags), &k.Tags); err != nil {
			return nil, fmt.Errorf("auth key %s: tags: %w", k.ID, err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

func (s *SQLite) Register(ctx context.Context, r Registration) (Node, error) {
	var out Node
	err := s.tx(ctx, func(tx *sql.Tx) error {
		existing, err := nodeWhere(ctx, tx, `machine_key = ?`, r.MachineKey[:])
		known := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := nodeKeyFree(ctx, tx, r); err != nil {
			return err
		}
		if r.AuthKeyID == "" && r.LoginUser == "" {
			if !known {
				return ErrNeedAuthKey
			}
			if existing.Expired(r.Now) && !r.KeyExpiryOff {
				return &NodeExpiredError{At: existing.KeyExpiry}
			}
			if err := userEnabled(ctx, tx, existing.User); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE nodes SET node_key=?, os=?, last_seen=? WHERE id=?`,
				r.NodeKey[:], r.OS, r.Now.UnixNano(), existing.ID); err != nil {
				return err
			}
			out, err = nodeWhere(ctx, tx, `id = ?`, existing.ID)
			return err
		}

		var ak PreAuthKey
		if r.LoginUser != "" {
			// Logged in through an IdP: the user's own, untagged device.
			if err := userEnabled(ctx, tx, r.LoginUser); err != nil {
				return err
			}
			ak.User = r.LoginUser
		} else if ak, err = consumeKey(ctx, tx, r); err != nil {
			return err
		}
		var expiry int64
		if len(ak.Tags) == 0 && r.KeyLifetime > 0 {
			expiry = r.Now.Add(r.KeyLifetime).UnixNano()
		}
		if known {
			// Re-auth of a known machine: same node, same addresses, fresh
			// key expiry and the tags of the new key.
			if _, err := tx.ExecContext(ctx, `UPDATE nodes SET node_key=?, os=?, tags=?, user_name=?, key_expiry=?, key_revoked=0, last_seen=?, ephemeral=? WHERE id=?`,
				r.NodeKey[:], r.OS, mustJSON(ak.Tags), ak.User, expiry, r.Now.UnixNano(), ak.Ephemeral, existing.ID); err != nil {
				return err
			}
			out, err = nodeWhere(ctx, tx, `id = ?`, existing.ID)
			return err
		}
		host, err := nextHost(ctx, tx)
		if err != nil {
			return err
		}
		st, err := settingsTx(ctx, tx)
		if err != nil {
			return err
		}
		v4, v6, err := ipam.Addrs(host, st)
		if err != nil {
			return err
		}
		name, err := uniqueName(ctx, tx, DNSLabel(r.Hostname), 0)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO nodes(machine_key, node_key, name, hostname, os, host, ipv4, ipv6, user_name, tags,
			endpoints, advertised_routes, approved_routes, key_expiry, last_seen, created, ephemeral)
			VALUES(?,?,?,?,?,?,?,?,?,?,'[]','[]','[]',?,?,?,?)`,
			r.MachineKey[:], r.NodeKey[:], name, r.Hostname, r.OS, host, v4.String(), v6.String(), ak.User, mustJSON(ak.Tags),
			expiry, r.Now.UnixNano(), r.Now.UnixNano(), ak.Ephemeral)
		if err != nil {
			if isUniqueNodeKey(err) {
				return ErrNodeKeyInUse
			}
			return fmt.Errorf("insert node: %w", err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		out, err = nodeWhere(ctx, tx, `id = ?`, id)
		return err
	})
	return out, err
}

// consumeKey checks r's auth key and, for a single-use key, marks it used
// with a conditional UPDATE in the caller's transaction (S7).
func consumeKey(ctx context.Context, tx *sql.Tx, r Registration) (PreAuthKey, error) {
	var k PreAuthKey
	var tags string
	var exp, revoked int64
	err := tx.QueryRowContext(ctx, `SELECT id, hash, reusable, tags, expiry, used, user_name, revoked, ephemeral FROM preauth_keys WHERE id = ?`, r.AuthKeyID).
		Scan(&k.ID, &k.Hash, &k.Reusable, &tags, &exp, &k.Used, &k.User, &revoked, &k.Ephemeral)
	if errors.Is(err, sql.ErrNoRows) {
		return k, ErrKeyNotFound
	}
	if err != nil {
		return k, fmt.Errorf("read auth key: %w", err)
	}
	// A wrong secret looks exactly like an unknown key (S8: constant time).
	if !key.Equal(k.Hash, r.AuthKeyHash) {
		return k, ErrKeyNotFound
	}
	if revoked != 0 {
		return k, ErrKeyRevoked
	}
	k.Expiry = time.Unix(0, exp)
	if !r.Now.Before(k.Expiry) {
		return k, &KeyExpiredError{At: k.Expiry}
	}
	if err := userEnabled(ctx, tx, k.User); err != nil {
		return k, err
	}
	if err := json.Unmarshal([]byte(tags), &k.Tags); err != nil {
		return k, fmt.Errorf("auth key tags: %w", err)
	}
	q := `UPDATE preauth_keys SET used=1 WHERE id=? AND used=0`
	if k.Reusable {
		q = `UPDATE preauth_keys SET used=1 WHERE id=?`
	}
	res, err := tx.ExecContext(ctx, q, k.ID)
	if err != nil {
		return k, fmt.Errorf("consume auth key: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return k, ErrKeyUsed
	}
	return k, nil
}

func settingsTx(ctx context.Context, tx *sql.Tx) (netip.Prefix, error) {
	var v string
	if err := tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE name='ula'`).Scan(&v); err != nil {
		return netip.Prefix{}, fmt.Errorf("read mesh ULA: %w", err)
	}
	return netip.ParsePrefix(v)
}

// nextHost picks the host number after the highest in use, so a deleted
// node's address is not handed out again while peers may still hold it;
// only when the top is reached does it fill gaps.
func nextHost(ctx context.Context, tx *sql.Tx) (uint32, error) {
	var max int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(host),0) FROM nodes`).Scan(&max); err != nil {
		return 0, err
	}
	if n, ok := ipam.Next(uint32(max)); ok {
		return n, nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT host FROM nodes ORDER BY host`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cand, _ := ipam.Next(0)
	for rows.Next() {
		var h int64
		if err := rows.Scan(&h); err != nil {
			return 0, err
		}
		if uint32(h) > cand {
			return cand, nil
		}
		var ok bool
		if cand, ok = ipam.Next(uint32(h)); !ok {
			break
		}
	}
	return 0, ErrAddressesFull
}

// uniqueName returns base, or base-1, base-2, ... whichever is free (not
// used by node skip).
func uniqueName(ctx context.Context, tx *sql.Tx, base string, skip int64) (string, error) {
	for i := 0; i < 10000; i++ {
		name := base
		if i > 0 {
			name = base + "-" + strconv.Itoa(i)
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM nodes WHERE name = ? AND id != ?`, name, skip).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return name, nil
		}
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("no free name for %q", base)
}

func (s *SQLite) Nodes(ctx context.Context) ([]Node, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+nodeCols+` FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func (s *SQLite) NodeByMachine(ctx context.Context, m key.MachinePublic) (Node, error) {
	return nodeWhere(ctx, s.db, `machine_key = ?`, m[:])
}

func (s *SQLite) UpdateNodeStatus(ctx context.Context, id int64, st NodeStatus) (Node, error) {
	var out Node
	err := s.tx(ctx, func(tx *sql.Tx) error {
		n, err := nodeWhere(ctx, tx, `id = ?`, id)
		if err != nil {
			return err
		}
		name := n.Name
		if st.Hostname != "" && st.Hostname != n.Hostname {
			if name, err = uniqueName(ctx, tx, DNSLabel(st.Hostname), id); err != nil {
				return err
			}
		} else {
			st.Hostname = n.Hostname
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET hostname=?, name=?, endpoints=?, advertised_routes=?, lan_hosts=?, home_region=?, last_seen=? WHERE id=?`,
			st.Hostname, name, mustJSON(st.Endpoints), mustJSON(st.AdvertisedRoutes), mustJSON(st.LANHosts), st.HomeRegion, st.LastSeen.UnixNano(), id); err != nil {
			return fmt.Errorf("update node %d: %w", id, err)
		}
		out, err = nodeWhere(ctx, tx, `id = ?`, id)
		return err
	})
	return out, err
}

func (s *SQLite) ApproveRoutes(ctx context.Context, id int64, routes []netip.Prefix) (Node, error) {
	var out Node
	err := s.tx(ctx, func(tx *sql.Tx) error {
		n, err := nodeWhere(ctx, tx, `id = ?`, id)
		if err != nil {
			return err
		}
		approved := append([]netip.Prefix(nil), n.ApprovedRoutes...)
		for _, r := range routes {
			if !containsPrefix(n.AdvertisedRoutes, r) {
				return fmt.Errorf("%s on %s: %w", r, n.Name, ErrNotAdvertised)
			}
			if !containsPrefix(approved, r) {
				approved = append(approved, r)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE nodes SET approved_routes=? WHERE id=?`, mustJSON(approved), id); err != nil {
			return fmt.Errorf("approve routes on node %d: %w", id, err)
		}
		out, err = nodeWhere(ctx, tx, `id = ?`, id)
		return err
	})
	return out, err
}

func (s *SQLite) DeleteNode(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM nodes WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete node %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func containsPrefix(list []netip.Prefix, p netip.Prefix) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

const nodeCols = `id, machine_key, node_key, name, hostname, os, host, ipv4, ipv6, user_name, tags,
	endpoints, advertised_routes, approved_routes, key_expiry, last_seen, created, lan_hosts, home_region, ephemeral, key_revoked`

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func nodeWhere(ctx context.Context, q querier, where string, args ...any) (Node, error) {
	n, err := scanNode(q.QueryRowContext(ctx, `SELECT `+nodeCols+` FROM nodes WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return n, ErrNotFound
	}
	return n, err
}

func scanNode(row interface{ Scan(...any) error }) (Node, error) {
	var n Node
	var mk, nk []byte
	var v4, v6, tags, eps, adv, appr, lan string
	var host, exp, seen, created int64
	if err := row.Scan(&n.ID, &mk, &nk, &n.Name, &n.Hostname, &n.OS, &host, &v4, &v6, &n.User, &tags,
		&eps, &adv, &appr, &exp, &seen, &created, &lan, &n.HomeRegion, &n.Ephemeral, &n.KeyRevoked); err != nil {
		return n, err
	}
	if len(mk) != 32 || len(nk) != 32 {
		return n, fmt.Errorf("node %d: corrupt key column", n.ID)
	}
	copy(n.MachineKey[:], mk)
	copy(n.NodeKey[:], nk)
	n.Host = uint32(host)
	var err error
	if n.IPv4, err = netip.ParseAddr(v4); err != nil {
		return n, fmt.Errorf("node %d: ipv4: %w", n.ID, err)
	}
	if n.IPv6, err = netip.ParseAddr(v6); err != nil {
		return n, fmt.Errorf("node %d: ipv6: %w", n.ID, err)
	}
	for _, f := range []struct {
		s string
		v any
	}{{tags, &n.Tags}, {eps, &n.Endpoints}, {adv, &n.AdvertisedRoutes}, {appr, &n.ApprovedRoutes}, {lan, &n.LANHosts}} {
		if err := json.Unmarshal([]byte(f.s), f.v); err != nil {
			return n, fmt.Errorf("node %d: %w", n.ID, err)
		}
	}
	if exp != 0 {
		n.KeyExpiry = time.Unix(0, exp)
	}
	if seen != 0 {
		n.LastSeen = time.Unix(0, seen)
	}
	n.Created = time.Unix(0, created)
	return n, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("store: marshal " + err.Error()) // only slices of simple types reach here
	}
	if string(b) == "null" {
		return "[]"
	}
	return string(b)
}
