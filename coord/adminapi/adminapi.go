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
	PathKeys          = "/admin/v1/keys"
	PathNodes         = "/admin/v1/nodes" // DELETE PathNodes + "/" + ID|NAME
	PathRoutes        = "/admin/v1/routes"
	PathRoutesApprove = "/admin/v1/routes/approve"
)

type Fingerprint struct {
	Fingerprint string `json:"fingerprint"`
}

// CreateKeyRequest asks for a new pre-auth key.
type CreateKeyRequest struct {
	Reusable bool     `json:"reusable"`
	Tags     []string `json:"tags,omitempty"`
	Expiry   string   `json:"expiry"` // Go duration, e.g. "1h"
}

// Key describes a pre-auth key; Key (the full secret string) is set only
// in the answer to a create.
type Key struct {
	ID       string    `json:"id"`
	Key      string    `json:"key,omitempty"`
	Reusable bool      `json:"reusable"`
	Tags     []string  `json:"tags,omitempty"`
	Expiry   time.Time `json:"expiry"`
	Used     bool      `json:"used"`
	Created  time.Time `json:"created"`
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
}

// Route is one advertised route of a node.
type Route struct {
	NodeID   int64        `json:"node_id"`
	Node     string       `json:"node"`
	Prefix   netip.Prefix `json:"prefix"`
	Approved bool         `json:"approved"`
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

// NodePath is the path of one node.
func NodePath(ref string) string { return PathNodes + "/" + url.PathEscape(ref) }
