package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Store is coord's durable state. Every method is safe for concurrent use.
type Store interface {
	Ping(ctx context.Context) error
	Settings(ctx context.Context) (Settings, error)
	SetDomain(ctx context.Context, domain string) error

	CreatePreAuthKey(ctx context.Context, k PreAuthKey) error
	PreAuthKeys(ctx context.Context) ([]PreAuthKey, error)
	// RevokePreAuthKey makes a key fail every later registration; nodes
	// that joined with it keep working. DeletePreAuthKey removes it.
	RevokePreAuthKey(ctx context.Context, id string, now time.Time) (PreAuthKey, error)
	DeletePreAuthKey(ctx context.Context, id string) error

	// Register creates or updates the node of r.MachineKey. With an auth
	// key it checks and consumes the key in the same transaction that
	// writes the node (S7).
	Register(ctx context.Context, r Registration) (Node, error)
	Nodes(ctx context.Context) ([]Node, error)
	NodeByMachine(ctx context.Context, m key.MachinePublic) (Node, error)
	UpdateNodeStatus(ctx context.Context, id int64, s NodeStatus) (Node, error)
	ApproveRoutes(ctx context.Context, id int64, routes []netip.Prefix) (Node, error)
	DeleteNode(ctx context.Context, id int64) error
	// ExpireNode sets the node key's expiry to now and marks it revoked
	// (Node.KeyRevoked): the node leaves every netmap and must register
	// again with an auth key, whatever the policy's nodeAttrs say.
	ExpireNode(ctx context.Context, id int64, now time.Time) (Node, error)
	// SetNodeTags replaces a node's tags (at least one) and turns its
	// key expiry off, as tagged devices' keys do not expire.
	SetNodeTags(ctx context.Context, id int64, tags []string) (Node, error)
	// SetNodeExpiry sets when the node key expires; the zero time means
	// never. A time in the past expires it now (as ExpireNode).
	SetNodeExpiry(ctx context.Context, id int64, at time.Time) (Node, error)
	// RenameNode gives a node a new unique name (a DNS label).
	RenameNode(ctx context.Context, id int64, name string) (Node, error)

	// Users own nodes and keys. DeleteUser removes the user, their keys
	// and all their nodes in one transaction and returns the node IDs.
	CreateUser(ctx context.Context, u User) (User, error)
	Users(ctx context.Context) ([]User, error)
	DeleteUser(ctx context.Context, name string) ([]int64, error)
	// SetUserDisabled disables or enables a user. A disabled user's nodes
	// stay stored but are left out of every netmap and relay, cannot
	// register, and their keys cannot be used.
	SetUserDisabled(ctx context.Context, name string, disabled bool) (User, error)
	// SetUserAdmin sets the user's admin role (User.Admin).
	SetUserAdmin(ctx context.Context, name string, admin bool) (User, error)
	// RenameUser renames a user and moves their nodes and keys with them.
	RenameUser(ctx context.Context, old, name string) (User, error)

	// LoginIdentity records a person who logged in through an IdP plugin
	// and returns their user: the one this identity logged in as before,
	// else an unlinked user with the same email, else a new one. It
	// stores the IdP's groups on the user (policies match them) and
	// refuses a disabled user (ErrUserDisabled). identities.go.
	LoginIdentity(ctx context.Context, id Identity) (User, error)
	// Identities lists every stored identity with its user (User set),
	// for coord's periodic IdP refresh check.
	Identities(ctx context.Context) ([]Identity, error)
	// RefreshIdentity stores what a successful IdP refresh returned: the
	// identity's new secret and its user's IdP groups.
	RefreshIdentity(ctx context.Context, id Identity) error

	// Policy versions: SetPolicy stores a new current version; Policy
	// returns the current one (ErrNotFound: none set, the default
	// applies); PolicyHistory lists all, oldest first.
	SetPolicy(ctx context.Context, body string, now time.Time) (PolicyVersion, error)
	Policy(ctx context.Context) (PolicyVersion, error)
	PolicyHistory(ctx context.Context) ([]PolicyVersion, error)

	// The audit log (audit.go): AppendAudit stores one event and returns
	// it with its ID; AuditEvents reads them newest first; PruneAudit
	// deletes events older than before (zero: none by age) and all but
	// the newest keep (0: no cap), and says how many went.
	AppendAudit(ctx context.Context, e AuditEvent) (AuditEvent, error)
	AuditEvents(ctx context.Context, q AuditQuery) ([]AuditEvent, error)
	PruneAudit(ctx context.Context, before time.Time, keep int) (int64, error)

	// API keys for the remote admin API (apikeys.go). APIKey returns one
	// with its hash (ErrNotFound if unknown); APIKeys lists all without;
	// RevokeAPIKey makes one fail every later request (revoking twice
	// keeps the first time); TouchAPIKey records a use.
	CreateAPIKey(ctx context.Context, k APIKey) error
	APIKey(ctx context.Context, id string) (APIKey, error)
	APIKeys(ctx context.Context) ([]APIKey, error)
	RevokeAPIKey(ctx context.Context, id string, now time.Time) (APIKey, error)
	TouchAPIKey(ctx context.Context, id string, now time.Time) error

	Close() error
}

// Settings are mesh-wide values created once.
type Settings struct {
	ULA    netip.Prefix // the mesh IPv6 /48, random per mesh
	Domain string
}

// PreAuthKey is a stored pre-auth key; only the hash of its secret is kept.
type PreAuthKey struct {
	ID       string
	Hash     []byte // SHA-256 of the secret
	Reusable bool
	Tags     []string
	User     string // owner of the nodes joining with it; "" means DefaultUser
	Expiry   time.Time
	Used     bool
	Created  time.Time
	Revoked  time.Time // zero: not revoked
	// Ephemeral: nodes joining with this key are deleted soon after they
	// disconnect (coord's --ephemeral-inactivity-timeout).
	Ephemeral bool
}

// Node is a stored node.
type Node struct {
	ID               int64
	MachineKey       key.MachinePublic
	NodeKey          key.NodePublic
	Name             string // unique DNS label
	Hostname         string // as the node reported it
	OS               string
	Host             uint32 // host number, see coord/ipam
	IPv4, IPv6       netip.Addr
	User             string
	Tags             []string
	Endpoints        []netip.AddrPort
	AdvertisedRoutes []netip.Prefix
	ApprovedRoutes   []netip.Prefix
	KeyExpiry        time.Time // zero: never
	LastSeen         time.Time
	Created          time.Time
	LANHosts         []wire.LANHost // as the node published them (checked on read against routes)
	HomeRegion       int            // relay region the node is connected to
	Ephemeral        bool           // joined with an ephemeral key: deleted soon after it disconnects
	// KeyRevoked: the key was expired on purpose (ExpireNode: logout or
	// an admin's nodes expire), not by time; no policy nodeAttrs keep
	// such a node alive. A new key expiry (SetNodeExpiry, tags, a fresh
	// registration) clears it.
	KeyRevoked bool
}

// Expired reports whether the node key has expired at now.
func (n Node) Expired(now time.Time) bool {
	return !n.KeyExpiry.IsZero() && !now.Before(n.KeyExpiry)
}

// Registration is one register request, already authenticated by the
// machine key's signature.
type Registration struct {
	MachineKey key.MachinePublic
	NodeKey    key.NodePublic
	Hostname   string
	OS         string
	// AuthKeyID and AuthKeyHash are empty when a known machine
	// re-registers without an auth key.
	AuthKeyID   string
	AuthKeyHash []byte
	// LoginUser, when set, is the user who just logged in through an IdP
	// for this machine: the node is created, or re-authenticated with a
	// fresh key expiry, for that user without an auth key.
	LoginUser string
	// KeyExpiryOff says the policy in force turns the known node's key
	// expiry off (nodeAttrs lanmesh:disable-key-expiry): it may come back
	// without an auth key past its stored expiry, which is kept.
	KeyExpiryOff bool
	// KeyLifetime is how long an untagged node key lives from now.
	KeyLifetime time.Duration
	Now         time.Time
}

// NodeStatus is what a node reports when it opens its netmap stream.
type NodeStatus struct {
	Hostname         string // empty: unchanged
	Endpoints        []netip.AddrPort
	AdvertisedRoutes []netip.Prefix
	LANHosts         []wire.LANHost
	HomeRegion       int
	LastSeen         time.Time
}

var (
	ErrNotFound      = errors.New("not found")
	ErrKeyNotFound   = errors.New("auth key not found")
	ErrKeyUsed       = errors.New("auth key already used")
	ErrNeedAuthKey   = errors.New("machine is not registered: an auth key is required")
	ErrNotAdvertised = errors.New("route is not advertised by the node")
	ErrAddressesFull = errors.New("no free mesh address left")
	ErrExists        = errors.New("already exists")
	ErrNameTaken     = errors.New("name is taken by another node")
	// ErrNodeKeyInUse refuses a registration whose node key another
	// machine's node already has (S19).
	ErrNodeKeyInUse = errors.New("node key is already used by another node: each machine needs its own node key (remove the copied state directory on this machine, or delete the other node)")
	ErrKeyRevoked   = errors.New("auth key was revoked")
	ErrUserDisabled = errors.New("user is disabled")
)

// KeyExpiredError says a pre-auth key expired.
type KeyExpiredError struct{ At time.Time }

func (e *KeyExpiredError) Error() string {
	return fmt.Sprintf("auth key expired at %s", e.At.UTC().Format(time.RFC3339))
}

// NodeExpiredError says a node key expired: a login or an auth key renews it.
type NodeExpiredError struct{ At time.Time }

func (e *NodeExpiredError) Error() string {
	return fmt.Sprintf("node key expired at %s: log in again (lanmesh login) or register with an auth key (lanmesh up --auth-key)", e.At.UTC().Format(time.RFC3339))
}
