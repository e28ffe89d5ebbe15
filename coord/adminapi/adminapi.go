package adminapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// Paths on the admin socket.
const (
	PathFingerprint   = "/admin/v1/fingerprint"
	PathKeys          = "/admin/v1/keys"  // DELETE PathKeys + "/" + ID; POST .../revoke
	PathNodes         = "/admin/v1/nodes" // DELETE PathNodes + "/" + ID|NAME; POST .../rename, .../expire
	PathRoutes        = "/admin/v1/routes"
	PathRoutesApprove = "/admin/v1/routes/approve"
	PathUsers         = "/admin/v1/users" // DELETE PathUsers + "/" + NAME; POST .../disable, .../enable, .../rename
	PathPolicy        = "/admin/v1/policy"
	PathPolicyCheck   = "/admin/v1/policy/check"
	PathPolicyHistory = "/admin/v1/policy/history"
	PathAudit         = "/admin/v1/audit"   // GET ?since=RFC3339&actor=X&limit=N&before=ID
	PathAPIKeys       = "/admin/v1/apikeys" // POST .../ID/revoke
)

// RemotePrefix is where coord's HTTPS listener serves the admin API,
// authenticated by an API key: the socket's "/admin/v1/nodes" is
// "/api/v1/admin/nodes" there (RemotePath).
const RemotePrefix = "/api/v1/admin/"

// socketPrefix is what RemotePrefix replaces.
const socketPrefix = "/admin/v1/"

// RemotePath maps a socket path to its path on the HTTPS admin API.
func RemotePath(p string) string {
	if rest, ok := strings.CutPrefix(p, socketPrefix); ok {
		return RemotePrefix + rest
	}
	return p
}

// SocketPath maps an HTTPS admin API path back to the socket's, ok false
// if p is not under RemotePrefix.
func SocketPath(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, RemotePrefix)
	if !ok {
		return "", false
	}
	return socketPrefix + rest, true
}

// APIKeyPath is the path of one API key; APIKeyPath(id)+"/revoke"
// revokes it.
func APIKeyPath(id string) string { return PathAPIKeys + "/" + url.PathEscape(id) }

// AuditEvent is one audit log entry (see docs/admin.md for the actions).
type AuditEvent struct {
	ID        int64     `json:"id"`
	Time      time.Time `json:"time"`
	ActorKind string    `json:"actor_kind"` // socket, apikey, web, user, node, system
	Actor     string    `json:"actor"`
	Source    string    `json:"source"`
	Action    string    `json:"action"`
	Target    string    `json:"target,omitempty"`
	Result    string    `json:"result"` // ok, refused, error
	Detail    string    `json:"detail,omitempty"`
}

// CreateAPIKeyRequest asks for an API key.
type CreateAPIKeyRequest struct {
	Scope       string `json:"scope"`  // "read" or "admin"
	Expiry      string `json:"expiry"` // ParseExpiry: "90d", "720h"
	Description string `json:"description,omitempty"`
}

// APIKey describes an API key; Key (the full secret string) is set only
// in the answer to a create.
type APIKey struct {
	ID          string    `json:"id"`
	Key         string    `json:"key,omitempty"`
	Scope       string    `json:"scope"`
	Description string    `json:"description,omitempty"`
	CreatedBy   string    `json:"created_by"`
	Expiry      time.Time `json:"expiry"`
	Created     time.Time `json:"created"`
	Revoked     time.Time `json:"revoked,omitzero"`
	LastUsed    time.Time `json:"last_used,omitzero"`
}

// ParseExpiry reads a lifetime: a Go duration ("720h", "1h30m") or a
// whole number of days ("90d").
func ParseExpiry(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 100*365 {
			return 0, fmt.Errorf("%q: want a positive number of days like 90d, or a duration like 720h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration like 720h, or days like 90d", s)
	}
	return v, nil
}

// User is a user as the admin sees it.
type User struct {
	Name    string    `json:"name"`
	Email   string    `json:"email,omitempty"`
	Login   string    `json:"login"` // how policies name the user
	Nodes   int       `json:"nodes"`
	Created time.Time `json:"created"`
	// Disabled: the user's nodes are in no netmap and on no relay, and
	// nothing of theirs can register, until the user is enabled again.
	Disabled bool `json:"disabled"`
	// Role is "admin" (may use coord's web admin; autogroup:admin in
	// policies) or "member".
	Role string `json:"role"`
	// OldName is set only in the answer to a rename.
	OldName string `json:"old_name,omitempty"`
}

// CreateUserRequest makes a user.
type CreateUserRequest struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	Role  string `json:"role,omitempty"` // "admin" or "member" (default)
}

// RoleRequest sets a user's role: "admin" or "member".
type RoleRequest struct {
	Role string `json:"role"`
}

// Roles a user can have.
const (
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// DeletedUser answers a user delete.
type DeletedUser struct {
	Name  string  `json:"name"`
	Nodes []int64 `json:"deleted_nodes"`
}

// PolicyRequest carries a policy file for check or set; Name is used in
// error positions ("policy.hujson:3:5: ...").
type PolicyRequest struct {
	Name string `json:"name"`
	Body string `json:"body"`
}

// PolicyResult answers check and set: a refused policy is a 400 error
// whose message lists every problem.
type PolicyResult struct {
	Version int64 `json:"version,omitempty"` // set only
	Nodes   int   `json:"nodes"`             // nodes compiled against
	Tests   int   `json:"tests"`             // policy tests that passed
}

// Policy is one stored version; Version 0 with Default set means no
// policy was ever set.
type Policy struct {
	Version int64     `json:"version"`
	Default bool      `json:"default,omitempty"`
	Body    string    `json:"body,omitempty"`
	Created time.Time `json:"created,omitzero"`
}

// RenameRequest renames a node.
type RenameRequest struct {
	Name string `json:"name"`
}

// UserPath is the path of one user.
func UserPath(name string) string { return PathUsers + "/" + url.PathEscape(name) }

// UserActionPath is where a user is disabled, enabled, renamed or given
// a role (action "disable", "enable", "rename", "role"; rename takes a
// RenameRequest, role a RoleRequest).
func UserActionPath(name, action string) string { return UserPath(name) + "/" + action }

// KeyPath is the path of one pre-auth key (by ID); KeyPath(id)+"/revoke"
// revokes it.
func KeyPath(id string) string { return PathKeys + "/" + url.PathEscape(id) }

type Fingerprint struct {
	Fingerprint string `json:"fingerprint"`
}

// CreateKeyRequest asks for a new pre-auth key.
type CreateKeyRequest struct {
	Reusable bool     `json:"reusable"`
	Tags     []string `json:"tags,omitempty"`
	Expiry   string   `json:"expiry"`         // Go duration, e.g. "1h"
	User     string   `json:"user,omitempty"` // owner of its nodes; default "admin"
	// Ephemeral: nodes joining with the key are deleted soon after they
	// disconnect.
	Ephemeral bool `json:"ephemeral,omitempty"`
}

// Key describes a pre-auth key; Key (the full secret string) is set only
// in the answer to a create.
type Key struct {
	ID        string    `json:"id"`
	Key       string    `json:"key,omitempty"`
	Reusable  bool      `json:"reusable"`
	Tags      []string  `json:"tags,omitempty"`
	User      string    `json:"user"`
	Expiry    time.Time `json:"expiry"`
	Used      bool      `json:"used"`
	Created   time.Time `json:"created"`
	Revoked   time.Time `json:"revoked,omitzero"` // zero: not revoked
	Ephemeral bool      `json:"ephemeral,omitempty"`
}

// DeletedKey answers a key delete.
type DeletedKey struct {
	ID string `json:"deleted"`
}

// Node is a node as the admin sees it.
type Node struct {
	ID               int64            `json:"id"`
	Name             string           `json:"name"`
	Hostname         string           `json:"hostname"`
	OS               string           `json:"os,omitempty"`
	NodeKey          string           `json:"node_key"`
	Machine          string           `json:"machine_key"`
	IPv4             netip.Addr       `json:"ipv4"`
	IPv6             netip.Addr       `json:"ipv6"`
	User             string           `json:"user,omitempty"`
	Tags             []string         `json:"tags,omitempty"`
	Online           bool             `json:"online"`
	Expired          bool             `json:"expired"`
	Endpoints        []netip.AddrPort `json:"endpoints,omitempty"`
	AdvertisedRoutes []netip.Prefix   `json:"advertised_routes,omitempty"`
	ApprovedRoutes   []netip.Prefix   `json:"approved_routes,omitempty"`
	KeyExpiry        time.Time        `json:"key_expiry,omitzero"` // as stored (set by a login, a key or an admin)
	// KeyExpiryOffByPolicy: the policy's nodeAttrs turn the key expiry
	// off (lanmesh:disable-key-expiry): the node does not expire while
	// they do, and KeyExpiry applies again once they stop.
	KeyExpiryOffByPolicy bool      `json:"key_expiry_off_by_policy,omitempty"`
	LastSeen             time.Time `json:"last_seen,omitzero"`
	Created              time.Time `json:"created"`
	Ephemeral            bool      `json:"ephemeral,omitempty"`
}

// ExpiryRequest sets when a node's key expires: In (a Go duration from
// now, e.g. "10s" or "720h"), At (an RFC 3339 time), or Off (never).
// Exactly one must be given.
type ExpiryRequest struct {
	In  string    `json:"in,omitempty"`
	At  time.Time `json:"at,omitzero"`
	Off bool      `json:"off,omitempty"`
}

// Route is one advertised route of a node.
type Route struct {
	NodeID   int64        `json:"node_id"`
	Node     string       `json:"node"`
	Prefix   netip.Prefix `json:"prefix"`
	Approved bool         `json:"approved"`
	// AutoApproved: approved by the policy's autoApprovers, not by
	// `routes approve` (Approved is true too).
	AutoApproved bool `json:"auto_approved,omitempty"`
}

// ApproveRequest approves advertised routes of a node (ID or name).
type ApproveRequest struct {
	Node   string   `json:"node"`
	Routes []string `json:"routes"`
}

// Client talks to the admin API: on the admin socket (NewClient) or on
// coord's HTTPS listener with an API key (NewRemoteClient).
type Client struct {
	hc     *http.Client
	base   string // "http://coord" on the socket, the server URL remotely
	apiKey string // remote only
	where  string // for errors: "admin socket" or the server URL
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, base: "http://coord", where: "admin socket"}
}

// RemoteOptions configure a client of the HTTPS admin API.
type RemoteOptions struct {
	ServerURL string // https://host[:port] of coord (its --server-url)
	APIKey    string // lmapi_... (lanmesh-coord apikeys create)
	// Fingerprint pins coord's certificate (lanmesh-coord fingerprint),
	// for a coord with a self-signed certificate; empty verifies the
	// certificate against the system's CAs.
	Fingerprint string
}

// NewRemoteClient returns a client for coord's HTTPS admin API.
func NewRemoteClient(o RemoteOptions) (*Client, error) {
	u, err := url.Parse(o.ServerURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("server URL %q: want https://host[:port] (coord's --server-url)", o.ServerURL)
	}
	key := strings.TrimSpace(o.APIKey)
	if key == "" {
		return nil, errors.New("no API key: pass --api-key-file FILE or set LANMESH_API_KEY (make one on coord with lanmesh-coord apikeys create)")
	}
	if !strings.HasPrefix(key, "lmapi_") || strings.ContainsAny(key, " \t\r\n") {
		return nil, errors.New("API key: want the lmapi_... string lanmesh-coord apikeys create printed")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.Fingerprint != "" {
		pin, err := wire.ParseFingerprint(o.Fingerprint)
		if err != nil {
			return nil, err
		}
		// The pin replaces CA verification, as for agents: a
		// self-signed coord is trusted exactly when its certificate is
		// the pinned one.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("coord presented no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
				return errors.New("coord's certificate does not match the pinned fingerprint (wrong server, or its certificate changed; see lanmesh-coord fingerprint on coord)")
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	base := strings.TrimRight(u.String(), "/")
	return &Client{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, base: base, apiKey: key, where: base}, nil
}

// Do sends in (nil for none) to path (a socket path, PathNodes etc.; a
// remote client maps it with RemotePath) and decodes the answer into out
// (nil to ignore). Error answers come back as errors with coord's
// message.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	if c.apiKey != "" {
		path = RemotePath(path)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if c.apiKey == "" {
			return fmt.Errorf("admin socket: %w (is lanmesh-coord serve running with this --state-dir?)", err)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is in the message below; never the key
		}
		var cve *tls.CertificateVerificationError
		if errors.As(err, &cve) {
			return fmt.Errorf("coord %s: %w (a self-signed coord needs --fingerprint; get it with lanmesh-coord fingerprint on coord)", c.where, err)
		}
		return fmt.Errorf("coord %s: %w", c.where, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var we wire.Error
		if json.Unmarshal(b, &we) == nil && we.Error != "" {
			return fmt.Errorf("%s", we.Error)
		}
		return fmt.Errorf("admin API: HTTP %d", resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("admin API: bad answer: %w", err)
	}
	return nil
}

// NodeRenamePath is where a node is renamed.
func NodeRenamePath(ref string) string { return NodePath(ref) + "/rename" }

// NodeExpirePath is where a node's key is expired now.
func NodeExpirePath(ref string) string { return NodePath(ref) + "/expire" }

// NodeExpiryPath is where a node's key expiry is set (ExpiryRequest).
func NodeExpiryPath(ref string) string { return NodePath(ref) + "/expiry" }

// NodePath is the path of one node.
func NodePath(ref string) string { return PathNodes + "/" + url.PathEscape(ref) }

// DeletedNode answers a node delete.
type DeletedNode struct {
	ID   int64  `json:"deleted"`
	Name string `json:"name"`
}

// RenamedNode answers a node rename.
type RenamedNode struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	OldName string `json:"old_name"`
}

// ApprovedRoutes answers a route approval: all approved routes of the node.
type ApprovedRoutes struct {
	Node           string         `json:"node"`
	ApprovedRoutes []netip.Prefix `json:"approved_routes"`
}
