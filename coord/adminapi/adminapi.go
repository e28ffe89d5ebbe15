package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
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
)

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
	KeyExpiry        time.Time        `json:"key_expiry,omitzero"`
	LastSeen         time.Time        `json:"last_seen,omitzero"`
	Created          time.Time        `json:"created"`
	Ephemeral        bool             `json:"ephemeral,omitempty"`
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

// Client talks to the admin socket.
type Client struct {
	hc *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Do sends in (nil for none) to path and decodes the answer into out (nil
// to ignore). Error answers come back as errors with coord's message.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://coord"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin socket: %w (is lanmesh-coord serve running with this --state-dir?)", err)
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
