package localapi

import (
	"encoding/json"
	"net/netip"
	"time"
)

// Paths served on the socket.
const (
	PathStatus = "/localapi/v0/status"
	PathUp     = "/localapi/v0/up"
	PathDown   = "/localapi/v0/down"
	PathPing   = "/localapi/v0/ping"
)

// Backend states, as `lanmesh status` shows them.
const (
	StateNeedsLogin = "NeedsLogin"
	StateStopped    = "Stopped"
	StateStarting   = "Starting"
	StateRunning    = "Running"
)

// Status is the body of GET /localapi/v0/status and of `lanmesh status
// --json` (docs/cli.md; fields are stable, more may appear).
type Status struct {
	BackendState string      `json:"backend_state"`
	Coord        CoordStatus `json:"coord"`
	Self         *Node       `json:"self,omitempty"`
	Peers        []Peer      `json:"peers"`
	DNS          DNSStatus   `json:"dns"`
	// RejectedPeers are netmap peers the data plane left out, and why
	// (a node key another peer holds, an allowed IP it may not route);
	// every other peer is applied. Empty when all were applied.
	RejectedPeers []RejectedPeer `json:"rejected_peers"`
	// EngineError is the last failure applying the netmap to the data
	// plane ("" when the last apply worked); the agent retries it.
	EngineError string `json:"engine_error"`
	// ExitNode is the exit node this node asked for (--exit-node); nil
	// when none.
	ExitNode *ExitNodeStatus `json:"exit_node,omitempty"`
	// WireGuard is the data plane's WireGuard backend and why it runs.
	WireGuard WireGuardStatus `json:"wireguard"`
	// NeedsReauth: coord refused this node because its key expired
	// (docs/identity.md); BackendState is NeedsLogin. AuthURL is where
	// to log in again when coord has an identity provider (the agent
	// asks for one by itself and comes back up once the login is done);
	// otherwise "lanmesh up --auth-key KEY" re-authenticates.
	NeedsReauth bool   `json:"needs_reauth"`
	AuthURL     string `json:"auth_url,omitempty"`
}

// WireGuardStatus says which WireGuard implementation carries the mesh.
type WireGuardStatus struct {
	Backend string `json:"backend"` // "kernel" or "userspace" ("" when unknown)
	Reason  string `json:"reason"`  // e.g. "auto: the kernel has WireGuard"
	// Peers are the public keys of the peers configured in the WireGuard
	// device right now, read from the device (not from the netmap).
	Peers []string `json:"peers"`
}

// RejectedPeer is a peer the data plane left out.
type RejectedPeer struct {
	ID      int64  `json:"id"` // 0 when it is not in the netmap
	Name    string `json:"name"`
	NodeKey string `json:"node_key"`
	Reason  string `json:"reason"`
}

// ExitNodeStatus is the exit node in use (docs/exit-nodes.md).
type ExitNodeStatus struct {
	Selected string `json:"selected"` // as given to --exit-node
	ID       int64  `json:"id"`       // 0: no such peer in the netmap
	Name     string `json:"name"`
	IP       string `json:"ip"`
	// Active: the peer offers an approved exit route and internet
	// traffic goes through it. Otherwise that traffic is dropped (fail
	// closed) until it does, or `lanmesh up --exit-node=` clears it.
	Active         bool           `json:"active"`
	Routes         []netip.Prefix `json:"routes"` // the default routes used
	AllowLANAccess bool           `json:"allow_lan_access"`
	Reason         string         `json:"reason,omitempty"` // why not active
}

// DNSStatus is the agent's mesh DNS server.
type DNSStatus struct {
	Enabled bool   `json:"enabled"`
	Domain  string `json:"domain"` // "" until a netmap names one
	Listen  string `json:"listen"` // bound address; "" when not serving
}

// CoordStatus is the state of the connection to coord.
type CoordStatus struct {
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
	LastError string `json:"last_error"`
	NextRetry string `json:"next_retry"` // RFC3339; "" when not waiting
}

// Node is this node as coord knows it.
type Node struct {
	ID               int64          `json:"id"`
	Name             string         `json:"name"`
	Key              string         `json:"key"`
	Addresses        []netip.Prefix `json:"addresses"`
	AdvertisedRoutes []netip.Prefix `json:"advertised_routes"`
	Routes           []netip.Prefix `json:"routes"` // approved
	// CapMap is what the policy's nodeAttrs give this node: attributes
	// (names without values) and node capabilities (docs/policy.md).
	CapMap map[string][]json.RawMessage `json:"cap_map,omitempty"`
}

// Peer is one peer in the netmap plus what the data plane knows of it.
type Peer struct {
	ID        int64          `json:"id"`
	Name      string         `json:"name"`
	User      string         `json:"user,omitempty"` // owner; for whois
	Tags      []string       `json:"tags,omitempty"`
	Key       string         `json:"key"`
	Addresses []netip.Prefix `json:"addresses"`
	Routes    []netip.Prefix `json:"routes"`
	Endpoint  string         `json:"endpoint"`
	// Path is how packets reach the peer: "direct 198.18.2.2:41641",
	// "relay <region>", or "" (none yet). Older engines report only
	// "direct" or "relay" with Endpoint.
	Path string `json:"path"`
	// RelayInCoord: Path is a relay region that runs inside coord (its
	// embedded relay), so this peer's traffic stops while coord is down.
	RelayInCoord  bool   `json:"relay_in_coord,omitempty"`
	LastHandshake string `json:"last_handshake"`
	RxBytes       uint64 `json:"rx_bytes"`
	TxBytes       uint64 `json:"tx_bytes"`
	Online        bool   `json:"online"`
	// ExitNodeOption: the peer offers an approved exit route (0.0.0.0/0
	// or ::/0); ExitNode: it is the exit node in use.
	ExitNodeOption bool `json:"exit_node_option"`
	ExitNode       bool `json:"exit_node"`
}

// UpRequest is the body of POST /localapi/v0/up. Nil pointers leave a
// preference as it is.
type UpRequest struct {
	LoginServer      string          `json:"login_server,omitempty"`
	AuthKey          string          `json:"auth_key,omitempty"` // used once, never stored
	CoordFingerprint string          `json:"coord_fingerprint,omitempty"`
	AdvertiseRoutes  *[]netip.Prefix `json:"advertise_routes,omitempty"`
	AcceptRoutes     *bool           `json:"accept_routes,omitempty"`
	SNATSubnetRoutes *bool           `json:"snat_subnet_routes,omitempty"`
	Hostname         *string         `json:"hostname,omitempty"`
	// AdvertiseExitNode offers this node as an exit node.
	AdvertiseExitNode *bool `json:"advertise_exit_node,omitempty"`
	// ExitNode selects an exit node by name or mesh IP; "" clears it.
	ExitNode               *string       `json:"exit_node,omitempty"`
	ExitNodeAllowLANAccess *bool         `json:"exit_node_allow_lan_access,omitempty"`
	Timeout                time.Duration `json:"timeout,omitempty"` // 0: 30s
	// ForceReauth (with AuthKey) makes a new node key and registers it:
	// same node, addresses and name; peers get the new key and coord
	// and relays refuse the old one. Without AuthKey, log in with
	// LoginRequest.ForceReauth first.
	ForceReauth bool `json:"force_reauth,omitempty"`
}

// UpResponse is the answer once the first full netmap arrived.
type UpResponse struct {
	Name      string         `json:"name"`
	Addresses []netip.Prefix `json:"addresses"`
}

// PingRequest is the body of POST /localapi/v0/ping: one ICMP echo.
type PingRequest struct {
	Target  string        `json:"target"` // peer name or mesh IP
	Seq     int           `json:"seq"`
	Timeout time.Duration `json:"timeout,omitempty"` // 0: 5s
}

// PingResponse is one answered echo.
type PingResponse struct {
	Name     string  `json:"name"`
	IP       string  `json:"ip"`
	Endpoint string  `json:"endpoint"`
	Path     string  `json:"path"`
	Seq      int     `json:"seq"`
	RTTMs    float64 `json:"rtt_ms"`
}

// errorBody is every error answer.
type errorBody struct {
	Error string `json:"error"`
}
