package wire

import (
	"net/netip"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// ProtocolVersion is the version of this package's protocol. Coord refuses
// requests from a version it does not speak, with a message naming both.
const ProtocolVersion = 1

// HTTP paths served by coord.
const (
	PathChallenge = "/v1/challenge" // GET: a fresh single-use nonce
	PathRegister  = "/v1/register"  // POST Envelope{RegisterRequest}
	PathMap       = "/v1/map"       // POST Envelope{MapRequest}: long-lived stream of MapMessage
	PathHealth    = "/healthz"      // GET: 200 "ok" when the store answers
	// HeaderMachine, on GET PathChallenge, names the agent's machine
	// public key (key.MachinePublic text form). It proves nothing: coord
	// uses it only to charge a known machine's own challenge budget once
	// the source address's is spent.
	HeaderMachine = "Lanmesh-Machine"
)

// Limits both ends enforce.
const (
	MaxRequestBytes    = 64 << 10 // a control request body
	MaxMapMessageBytes = 16 << 20 // one line of the netmap stream
	KeepAliveInterval  = 15 * time.Second
	NonceTTL           = 60 * time.Second
)

// Challenge is coord's answer on PathChallenge.
type Challenge struct {
	Nonce string `json:"nonce"`
}

// Envelope carries every node request. Sig is the machine key's Ed25519
// signature of SignedBytes(path, nonce, body): it proves possession of the
// machine key without a reusable bearer secret, and the single-use nonce
// makes a captured request worthless.
type Envelope struct {
	Version int               `json:"version"`
	Machine key.MachinePublic `json:"machine"`
	Nonce   string            `json:"nonce"`
	Body    []byte            `json:"body"` // JSON of the request, base64 in the envelope
	Sig     []byte            `json:"sig"`
}

// SignedBytes is what the machine key signs for a request to path.
func SignedBytes(path, nonce string, body []byte) []byte {
	b := make([]byte, 0, len("lanmesh-v1\n")+len(path)+len(nonce)+len(body)+2)
	b = append(b, "lanmesh-v1\n"...)
	b = append(b, path...)
	b = append(b, '\n')
	b = append(b, nonce...)
	b = append(b, '\n')
	return append(b, body...)
}

// RegisterRequest joins a node to the mesh with a pre-auth key. A machine
// already registered may re-register (e.g. new node key) without an auth
// key.
type RegisterRequest struct {
	AuthKey  string         `json:"auth_key,omitempty"`
	NodeKey  key.NodePublic `json:"node_key"`
	Hostname string         `json:"hostname"`
	OS       string         `json:"os,omitempty"`
}

// RegisterResponse is coord's answer to a successful registration.
type RegisterResponse struct {
	Node Node `json:"node"`
}

// Error is the JSON body of every 4xx/5xx answer from coord.
type Error struct {
	Error string `json:"error"`
	// Reason is set when coord refuses a node in a way that retrying
	// cannot fix (one of the Reason* constants): the agent then leaves
	// the mesh (drops its peers and filter), reports NeedsLogin and stops
	// retrying until "lanmesh up" is run again.
	Reason string `json:"reason,omitempty"`
}

// Reasons for a final refusal of /v1/map (Error.Reason).
const (
	// ReasonNotRegistered: coord has no node for this machine key (the
	// admin deleted it, "lanmesh-coord nodes delete").
	ReasonNotRegistered = "not_registered"
	// ReasonNodeKeyMismatch: coord holds another node key for the machine.
	ReasonNodeKeyMismatch = "node_key_mismatch"
	// ReasonNodeExpired: the node key expired ("nodes expire" or the
	// configured expiry); the node must join again with an auth key.
	ReasonNodeExpired = "node_expired"
	// ReasonUserDisabled: the node's user is disabled ("users disable").
	ReasonUserDisabled = "user_disabled"
)

// MapRequest opens the netmap stream. It also reports what the node
// knows about itself: its endpoints and the routes it offers.
type MapRequest struct {
	NodeKey         key.NodePublic   `json:"node_key"`
	Endpoints       []netip.AddrPort `json:"endpoints,omitempty"`
	AdvertiseRoutes []netip.Prefix   `json:"advertise_routes,omitempty"`
	Hostname        string           `json:"hostname,omitempty"`
	// LANHosts are DHCP lease names a router publishes (opt-in) so that
	// permitted peers resolve <host>.<router>.<domain>.
	LANHosts []LANHost `json:"lan_hosts,omitempty"`
	// HomeRegion is the relay region the node is connected to (0: none),
	// so peers relay to it through that region.
	HomeRegion int `json:"home_region,omitempty"`
}

// LANHost is one named host on a router's LAN.
type LANHost struct {
	Name string     `json:"name"` // DNS label
	Addr netip.Addr `json:"addr"` // inside one of the router's routes
}

// NodeID is coord's stable identifier of a node.
type NodeID int64

// Node is one node as the netmap describes it.
type Node struct {
	ID        NodeID           `json:"id"`
	Name      string           `json:"name"` // DNS label, unique in the mesh
	Key       key.NodePublic   `json:"key"`
	Addresses []netip.Prefix   `json:"addresses"` // mesh IPv4 /32 and IPv6 /128
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
	// Routes are the subnet routes approved for this node; they belong in
	// its WireGuard AllowedIPs. AdvertisedRoutes may include unapproved ones.
	Routes           []netip.Prefix `json:"routes,omitempty"`
	AdvertisedRoutes []netip.Prefix `json:"advertised_routes,omitempty"`
	User             string         `json:"user,omitempty"`
	Tags             []string       `json:"tags,omitempty"`
	Online           bool           `json:"online"`
	KeyExpiry        time.Time      `json:"key_expiry,omitzero"`
	LANHosts         []LANHost      `json:"lan_hosts,omitempty"`
	HomeRegion       int            `json:"home_region,omitempty"`
	// CapMap is set on Self only: the attributes and node capabilities
	// the policy's nodeAttrs give this node (an attribute maps to no
	// values). Apps on the node read it from `lanmesh status --json`.
	CapMap CapMap `json:"cap_map,omitempty"`
}

// MapMessage is one line of the netmap stream (newline-delimited JSON).
// The first message has Full set and carries Self and all Peers; later
// ones carry only what changed. A message with only KeepAlive set proves
// the stream is alive.
type MapMessage struct {
	Seq       int64 `json:"seq"`
	KeepAlive bool  `json:"keep_alive,omitempty"`
	Full      bool  `json:"full,omitempty"`

	Self   *Node  `json:"self,omitempty"`   // full map, or self changed
	Domain string `json:"domain,omitempty"` // mesh DNS domain, e.g. "mesh.internal"

	Peers        []Node   `json:"peers,omitempty"`         // Full only
	PeersChanged []Node   `json:"peers_changed,omitempty"` // upserts, whole nodes
	PeersRemoved []NodeID `json:"peers_removed,omitempty"`

	// PacketFilter is this node's filter (inbound and, on routers,
	// forward). Present in the full map and whenever it changes; a node
	// that never got one enforces deny-all (S14: no filter, no traffic).
	PacketFilter *PacketFilter `json:"packet_filter,omitempty"`
	// DERPMap lists the relays; present in the full map and when changed.
	DERPMap *DERPMap `json:"derp_map,omitempty"`
}
