package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/lanmesh/lanmesh/coord/netmap"
	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/derp/stun"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// The relay embedded in coord: derp.Server at /derp on the node API's
// HTTPS listener plus a STUN server, with coord's own store as verifier.
// Nodes learn of it (and of lanmesh-derp regions) from the DERP map in
// their full netmap.

// CoordRegionID is the DERP map region of coord's embedded relay.
const CoordRegionID = 1

// CoordRegionCode is that region's code.
const CoordRegionCode = "coord"

// maxDERPMapBytes bounds a --derp-map file.
const maxDERPMapBytes = 1 << 20

// RelayConfig configures the embedded relay.
type RelayConfig struct {
	// STUNAddr is the UDP address for STUN, e.g. "198.18.0.10:3478";
	// empty: no STUN server.
	STUNAddr string
	// Per-client limits, as in derp.Options (zero: derp's defaults,
	// derp.NoRateLimit: no rate limit).
	RateBytesPerSec int64
	Burst           int64
	QueueLen        int
	QueueBytes      int
	MaxHandshakes   int
	// MaxHandshakesPerSource is one source address's share.
	MaxHandshakesPerSource int
}

// relayState is the Server's relay part; zero value: no relay.
type relayState struct {
	relay atomic.Pointer[embeddedRelay]
}

type embeddedRelay struct {
	srv    *derp.Server
	stun   *stun.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// EnableRelay starts the embedded relay and, if rc.STUNAddr is set, the
// STUN server; it returns the address STUN listens on (zero without
// STUN). Call it at most once, before or after Serve; Close stops both.
func (s *Server) EnableRelay(rc RelayConfig) (netip.AddrPort, error) {
	srv, err := derp.NewServer(derp.Options{
		Verifier:               &storeVerifier{hub: s.hub},
		RateBytesPerSec:        rc.RateBytesPerSec,
		Burst:                  rc.Burst,
		QueueLen:               rc.QueueLen,
		QueueBytes:             rc.QueueBytes,
		MaxHandshakes:          rc.MaxHandshakes,
		MaxHandshakesPerSource: rc.MaxHandshakesPerSource,
		Logger:                 s.log.With("part", "relay"),
	})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("embedded relay: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &embeddedRelay{srv: srv, cancel: cancel}
	var stunAddr netip.AddrPort
	if rc.STUNAddr != "" {
		pc, err := net.ListenPacket("udp", rc.STUNAddr)
		if err != nil {
			cancel()
			srv.Close()
			return netip.AddrPort{}, fmt.Errorf("STUN on %s: %w", rc.STUNAddr, err)
		}
		uc := pc.(*net.UDPConn)
		stunAddr = uc.LocalAddr().(*net.UDPAddr).AddrPort()
		r.stun = &stun.Server{Logger: s.log.With("part", "stun")}
		r.wg.Go(func() { r.stun.Serve(ctx, uc) })
	}
	if !s.derp.relay.CompareAndSwap(nil, r) {
		cancel()
		srv.Close()
		r.wg.Wait()
		return netip.AddrPort{}, errors.New("embedded relay: already enabled")
	}
	// Every stored change (node or user deleted, key rotated, key expiry
	// timer) makes the relay ask the store about each connected client at
	// once, so revoked nodes lose the relay in milliseconds (S15), not at
	// the periodic re-check.
	changes, unsub := s.hub.Subscribe()
	r.wg.Go(func() {
		defer unsub()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changes:
				srv.Recheck(ctx)
			}
		}
	})
	s.log.Info("embedded relay enabled", "stun", stunAddr.String())
	return stunAddr, nil
}

// Relay is the embedded relay, nil when not enabled (tests read metrics).
func (s *Server) Relay() *derp.Server {
	if r := s.derp.relay.Load(); r != nil {
		return r.srv
	}
	return nil
}

// serveRelay is the /derp handler: the embedded relay, or 404 when off.
func (s *Server) serveRelay(w http.ResponseWriter, r *http.Request) {
	er := s.derp.relay.Load()
	if er == nil {
		writeErr(w, http.StatusNotFound, "this coord runs no relay (started with --derp=false)")
		return
	}
	if r.URL.Path == derp.Path+"/probe" {
		return // latency probe: an empty 200
	}
	er.srv.ServeHTTP(w, r)
}

// closeRelay stops the relay and STUN; connected clients are dropped.
func (s *Server) closeRelay() {
	if r := s.derp.relay.Load(); r != nil {
		r.cancel()
		r.srv.Close()
		r.wg.Wait()
	}
}

// SetDERPMap sets the relay map every full netmap carries (and deltas,
// when it changes); nil sends none.
func (s *Server) SetDERPMap(m *wire.DERPMap) error {
	if m != nil {
		if err := m.Validate(); err != nil {
			return err
		}
	}
	s.hub.SetDERPMap(m)
	return nil
}

// CoordRegion describes coord's embedded relay for the DERP map: host is
// a name or IP from --server-url, derpPort the HTTPS port nodes reach,
// stunPort 0 for no STUN, fingerprint coord's certificate pin.
func CoordRegion(host string, derpPort, stunPort int, fingerprint string) (wire.DERPRegion, error) {
	if host == "" {
		return wire.DERPRegion{}, errors.New("coord relay region: no host (set --server-url)")
	}
	n := wire.DERPNode{Name: "coord", HostName: host, DERPPort: derpPort, STUNPort: stunPort, CertFingerprint: fingerprint}
	if stunPort == 0 {
		n.STUNPort = -1
	}
	// Addresses spare nodes a DNS lookup and let netcheck find the STUN
	// server, which it only does by address.
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		if a.Is4() {
			n.IPv4 = a
		} else {
			n.IPv6 = a
		}
	}
	r := wire.DERPRegion{ID: CoordRegionID, Code: CoordRegionCode, Name: "lanmesh-coord", Nodes: []wire.DERPNode{n}, Embedded: true}
	m := wire.DERPMap{Regions: []wire.DERPRegion{r}}
	if err := m.Validate(); err != nil {
		return wire.DERPRegion{}, fmt.Errorf("coord relay region: %w", err)
	}
	return r, nil
}

// BuildDERPMap joins coord's own region (nil: the embedded relay is off)
// with the regions of extra (nil: none). The result is nil when empty.
func BuildDERPMap(coord *wire.DERPRegion, extra *wire.DERPMap) (*wire.DERPMap, error) {
	m := &wire.DERPMap{}
	if coord != nil {
		m.Regions = append(m.Regions, *coord)
	}
	if extra != nil {
		for _, r := range extra.Regions {
			if coord != nil && r.ID == coord.ID {
				return nil, fmt.Errorf("derp map: region id %d is coord's embedded relay; give region %q another id (or run coord with --derp=false)", r.ID, r.Code)
			}
			m.Regions = append(m.Regions, r)
		}
	}
	if len(m.Regions) == 0 {
		return nil, nil
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// ParseDERPMap reads a DERP map in its JSON wire form, strictly: unknown
// fields (typos) and maps without regions are errors.
func ParseDERPMap(b []byte) (*wire.DERPMap, error) {
	if len(b) > maxDERPMapBytes {
		return nil, fmt.Errorf("derp map: larger than %d bytes", maxDERPMapBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m wire.DERPMap
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("derp map: not a JSON DERP map ({\"regions\":[...]}): %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("derp map: trailing data after the JSON object")
	}
	if len(m.Regions) == 0 {
		return nil, errors.New("derp map: no regions")
	}
	for _, r := range m.Regions {
		if r.Embedded {
			return nil, fmt.Errorf("derp map: region %q sets \"embedded\", which marks coord's own relay: leave it out", r.Code)
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// LoadDERPMap reads a --derp-map file.
func LoadDERPMap(path string) (*wire.DERPMap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--derp-map: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDERPMapBytes+1))
	if err != nil {
		return nil, fmt.Errorf("--derp-map %s: %w", path, err)
	}
	m, err := ParseDERPMap(b)
	if err != nil {
		return nil, fmt.Errorf("--derp-map %s: %w", path, err)
	}
	return m, nil
}

// snapshotter is what storeVerifier needs of the hub.
type snapshotter interface {
	Snapshot(ctx context.Context) (*netmap.Snapshot, error)
}

// storeVerifier lets only live nodes (registered, not deleted, not
// expired) use the embedded relay. It reads the hub's snapshot, so it is
// as fresh as the netmaps; a store error is a refusal (S9: fail closed).
type storeVerifier struct {
	hub snapshotter

	mu   sync.Mutex
	snap *netmap.Snapshot // keys was built from this snapshot
	keys map[key.NodePublic]struct{}
}

func (v *storeVerifier) Allowed(ctx context.Context, k key.NodePublic) (bool, error) {
	snap, err := v.hub.Snapshot(ctx)
	if err != nil {
		return false, fmt.Errorf("coord store: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.snap != snap {
		// One set per snapshot: a re-check of every client after a change
		// costs one pass over the nodes, not one per client.
		v.keys = make(map[key.NodePublic]struct{}, len(snap.Nodes))
		for _, n := range snap.Nodes {
			v.keys[n.Key] = struct{}{}
		}
		v.snap = snap
	}
	_, ok := v.keys[k]
	return ok, nil
}
