package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/lanmesh/lanmesh/internal/atomicfile"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// NetmapFileName is the netmap cache's name inside the state dir.
const NetmapFileName = "netmap.json"

// NetmapVersion is the cache's schema version.
const NetmapVersion = 1

// NetmapCache is the last netmap coord sent, kept so that a node that
// restarts while coord is away brings its mesh back (DESIGN.md: "if coord
// goes down ... peers keep finding each other through the last netmap").
// It is a cache: unlike state.json, a missing or corrupt one only means
// no peers until coord answers (fail closed).
type NetmapCache struct {
	Version int `json:"version"`
	// NodeKey and LoginServer bind the cache to one identity on one
	// coord: a re-joined node must not apply another identity's map.
	NodeKey     key.NodePublic   `json:"node_key"`
	LoginServer string           `json:"login_server"`
	SavedAt     time.Time        `json:"saved_at"`
	Map         *wire.MapMessage `json:"map"` // a full map
}

// NetmapPath is the cache's path in dir.
func NetmapPath(dir string) string { return filepath.Join(dir, NetmapFileName) }

// LoadNetmap reads dir/netmap.json; ErrNotExist when there is none.
func LoadNetmap(dir string) (*NetmapCache, error) {
	path := NetmapPath(dir)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotExist
	}
	if err != nil {
		return nil, fmt.Errorf("netmap cache %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, wire.MaxMapMessageBytes+1))
	if err != nil {
		return nil, fmt.Errorf("netmap cache %s: %w", path, err)
	}
	c, err := ParseNetmap(b)
	if err != nil {
		return nil, fmt.Errorf("netmap cache %s: %w", path, err)
	}
	return c, nil
}

// ParseNetmap decodes and checks the bytes of a netmap cache.
func ParseNetmap(b []byte) (*NetmapCache, error) {
	if len(b) > wire.MaxMapMessageBytes {
		return nil, fmt.Errorf("larger than %d bytes", wire.MaxMapMessageBytes)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("file is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var c NetmapCache
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("not valid netmap JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	switch {
	case c.Version != NetmapVersion:
		return nil, fmt.Errorf("version %d, want %d", c.Version, NetmapVersion)
	case c.NodeKey.IsZero():
		return nil, errors.New("node_key is missing")
	case c.LoginServer == "":
		return nil, errors.New("login_server is missing")
	case c.Map == nil || !c.Map.Full || c.Map.Self == nil:
		return nil, errors.New("map is not a full netmap with self")
	case c.Map.Self.Key != c.NodeKey:
		return nil, errors.New("map's self is not node_key")
	}
	return &c, nil
}

// StoreNetmap writes c atomically with mode 0600 (it names every peer
// and the filter). Callers write rarely: routers have flash.
func StoreNetmap(dir string, c *NetmapCache) error {
	if c.Version == 0 {
		c.Version = NetmapVersion
	}
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode netmap cache: %w", err)
	}
	if _, err := ParseNetmap(b); err != nil {
		return fmt.Errorf("refusing to store an invalid netmap cache: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	if err := atomicfile.Write(NetmapPath(dir), b, 0o600); err != nil {
		return fmt.Errorf("write netmap cache %s: %w", NetmapPath(dir), err)
	}
	return nil
}
