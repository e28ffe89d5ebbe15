package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/lanmesh/lanmesh/internal/atomicfile"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// FileName is the state file's name inside the state dir.
const FileName = "state.json"

// Version is the schema version written into the file.
const Version = 1

// maxFileBytes bounds what Load reads; a real state file is a few KiB.
const maxFileBytes = 1 << 20

// Prefs are what the user asked for with `lanmesh up`.
type Prefs struct {
	WantRunning      bool           `json:"want_running"`
	Hostname         string         `json:"hostname,omitempty"`
	AdvertiseRoutes  []netip.Prefix `json:"advertise_routes,omitempty"`
	AcceptRoutes     bool           `json:"accept_routes"`
	SNATSubnetRoutes bool           `json:"snat_subnet_routes"`
	// AdvertiseExitNode offers 0.0.0.0/0 and ::/0 (--advertise-exit-node).
	AdvertiseExitNode bool `json:"advertise_exit_node,omitempty"`
	// ExitNode is the peer to send internet traffic through, by name or
	// mesh IP as the user gave it (--exit-node); "" for none.
	ExitNode string `json:"exit_node,omitempty"`
	// ExitNodeAllowLANAccess keeps connected LANs out of the exit tunnel.
	ExitNodeAllowLANAccess bool `json:"exit_node_allow_lan_access,omitempty"`
}

// Equal reports whether p and o ask for the same thing.
func (p Prefs) Equal(o Prefs) bool {
	return p.WantRunning == o.WantRunning && p.Hostname == o.Hostname &&
		p.AcceptRoutes == o.AcceptRoutes && p.SNATSubnetRoutes == o.SNATSubnetRoutes &&
		slices.Equal(p.AdvertiseRoutes, o.AdvertiseRoutes) && p.AdvertiseExitNode == o.AdvertiseExitNode &&
		p.ExitNode == o.ExitNode && p.ExitNodeAllowLANAccess == o.ExitNodeAllowLANAccess
}

// State is the content of state.json. The machine key identifies this
// device to coord; the node key is its WireGuard identity. Both are
// created once, before the first registration, and survive restarts.
type State struct {
	Version          int                `json:"version"`
	MachineKey       key.MachinePrivate `json:"machine_key"`
	NodeKey          key.NodePrivate    `json:"node_key"`
	NodeID           wire.NodeID        `json:"node_id,omitempty"`
	Name             string             `json:"name,omitempty"`
	Addresses        []netip.Prefix     `json:"addresses,omitempty"`
	LoginServer      string             `json:"login_server,omitempty"`
	CoordFingerprint string             `json:"coord_fingerprint,omitempty"`
	Prefs            Prefs              `json:"prefs"`
}

// Joined reports whether coord has registered this node.
func (s *State) Joined() bool { return s != nil && s.NodeID != 0 && s.LoginServer != "" }

// New returns the state of a node that has never joined, with fresh keys.
func New() *State {
	return &State{Version: Version, MachineKey: key.NewMachine(), NodeKey: key.NewNode(),
		Prefs: Prefs{SNATSubnetRoutes: true}}
}

// ErrNotExist is returned by Load when no state file exists: the node has
// never joined (NeedsLogin).
var ErrNotExist = errors.New("no state file: node has never joined")

// Path is the state file's path in dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// Load reads dir/state.json. A missing file returns ErrNotExist. Anything
// else wrong with the file is an error that must stop the agent (S14):
// joining as a new node would silently drop the node's identity.
func Load(dir string) (*State, error) {
	path := Path(dir)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotExist
	}
	if err != nil {
		return nil, corrupt(path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, corrupt(path, err)
	}
	if len(b) > maxFileBytes {
		return nil, corrupt(path, fmt.Errorf("larger than %d bytes", maxFileBytes))
	}
	s, err := Parse(b)
	if err != nil {
		return nil, corrupt(path, err)
	}
	return s, nil
}

func corrupt(path string, err error) error {
	return fmt.Errorf("state file %s is unusable: %w; restore it from a backup, or delete it to join as a new node (the old node must then be removed on coord)", path, err)
}

// Parse decodes and validates the bytes of a state file.
func Parse(b []byte) (*State, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("file is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s State
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("not valid state JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *State) validate() error {
	if s.Version != Version {
		return fmt.Errorf("version %d, want %d", s.Version, Version)
	}
	if s.MachineKey.IsZero() {
		return errors.New("machine_key is missing")
	}
	if s.NodeKey.IsZero() {
		return errors.New("node_key is missing")
	}
	if s.NodeID < 0 {
		return fmt.Errorf("node_id %d is negative", s.NodeID)
	}
	if s.NodeID != 0 && len(s.Addresses) == 0 {
		return errors.New("node_id is set but addresses are missing")
	}
	for _, p := range s.Addresses {
		if !p.IsValid() {
			return errors.New("addresses holds an invalid prefix")
		}
	}
	if s.CoordFingerprint != "" {
		if _, err := wire.ParseFingerprint(s.CoordFingerprint); err != nil {
			return err
		}
	}
	return nil
}

// Store writes s to dir/state.json when it differs from what the file
// holds, so an unchanged state costs no flash write. It reports whether
// it wrote.
func Store(dir string, s *State) (bool, error) {
	if s.Version == 0 {
		s.Version = Version
	}
	if err := s.validate(); err != nil {
		return false, fmt.Errorf("refusing to store invalid state: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return false, fmt.Errorf("encode state: %w", err)
	}
	b = append(b, '\n')
	path := Path(dir)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("create state dir: %w", err)
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return false, fmt.Errorf("write state file %s: %w", path, err)
	}
	return true, nil
}
