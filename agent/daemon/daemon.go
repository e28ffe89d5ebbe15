package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/agent/engine"
	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Control is what the daemon needs from a coord client.
type Control interface {
	Register(ctx context.Context, req wire.RegisterRequest) (wire.RegisterResponse, error)
	Map(ctx context.Context, req wire.MapRequest, fn func(*wire.MapMessage) error) error
}

// Options wire the daemon to its parts.
type Options struct {
	Config    *config.Config
	Logger    *slog.Logger
	NewEngine func(engine.Options, *slog.Logger) (engine.Engine, error)
	// NewControl makes a coord client; nil uses controlclient.New.
	NewControl func(controlclient.Options) (Control, error)
	// Endpoints lists this host's endpoint candidates; nil uses the
	// host's interfaces (see localEndpoints). An engine that offers
	// LocalEndpoints (with STUN-mapped addresses) takes precedence.
	Endpoints func(port uint16, mesh []netip.Prefix) []netip.AddrPort
	// WatchNetwork calls notify on address or link changes until ctx
	// ends; nil uses netlink on Linux (none elsewhere: polling only).
	WatchNetwork func(ctx context.Context, notify func()) error
}

// Daemon is the running agent.
type Daemon struct {
	cfg        *config.Config
	log        *slog.Logger
	eng        engine.Engine
	newControl func(controlclient.Options) (Control, error)
	endpoints  func(port uint16, mesh []netip.Prefix) []netip.AddrPort
	watch      func(ctx context.Context, notify func()) error
	dns        *meshDNS // nil: mesh DNS off or failed to start

	upMu sync.Mutex // serializes up and down

	bgCancel context.CancelFunc // stops the refresher
	bgDone   chan struct{}

	// mu guards all following fields.
	mu      sync.Mutex
	st      *state.State // nil: no state file yet (never joined)
	nm      *netmap      // nil: no netmap since start or down
	lastCfg engine.Config
	// rejected are the peers the engine left out of the last config
	// (S19); engineErr is the last Reconfig failure ("" when it worked)
	// and retryCfg the config to retry (nil: none), see reconfigLocked.
	rejected  []engine.Rejected
	engineErr string
	retryCfg  *engine.Config
	coord     coordConn
	loop      *mapLoop // nil: not connecting
	gen       int
	cache     cacheState
	closed    bool
	reauth    reauthState // background re-authentication (reauth.go)
	pending   pendingKey  // a new node key waiting for its login (--force-reauth)
	// lanHosts are this router's published DHCP names (dns.publish_leases).
	lanHosts []wire.LANHost
	// sent is what the current MapRequest told coord.
	sent struct {
		endpoints  []netip.AddrPort
		lanHosts   []wire.LANHost
		homeRegion int
	}
}

type coordConn struct {
	connected bool
	lastErr   string
	nextRetry time.Time
	// refused is set when coord refused this node for good (refused.go):
	// the state is NeedsLogin until "lanmesh up" starts a new loop.
	refused bool
	// expired: the refusal was for an expired node key (needs re-auth).
	expired bool
}

// New loads state and opens the engine. A corrupt state file is an error
// that must stop the agent (S14): joining as a new node would lose its
// identity and run without the mesh's filter.
func New(o Options) (*Daemon, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := o.Config
	if cfg.MemoryLimitMiB > 0 {
		// wireguard-go's pools grow without bound; a soft limit makes the
		// GC work harder before a 128 MB router kills the agent.
		debug.SetMemoryLimit(int64(cfg.MemoryLimitMiB) << 20)
	}
	st, err := state.Load(cfg.StateDir)
	if errors.Is(err, state.ErrNotExist) {
		st = nil
		log.Info("no state file: this node has not joined a mesh yet", "dir", cfg.StateDir)
	} else if err != nil {
		return nil, err
	}
	if o.NewEngine == nil {
		return nil, errors.New("daemon: no engine")
	}
	eng, err := o.NewEngine(engine.Options{
		TUNName:            cfg.TUNName,
		MTU:                cfg.MTU,
		ListenPort:         uint16(cfg.ListenPort),
		Backend:            cfg.Backend,
		Offloads:           engine.Offloads{TUN: cfg.Offloads.TUN, UDPGSO: cfg.Offloads.UDPGSO, UDPGRO: cfg.Offloads.UDPGRO},
		MaxInflightPackets: cfg.MaxInflightPackets,
		UAPISocket:         cfg.WireGuardUAPI,
	}, log.With("part", "engine"))
	if err != nil {
		return nil, fmt.Errorf("open engine: %w", err)
	}
	d := &Daemon{cfg: cfg, log: log, eng: eng, st: st, newControl: o.NewControl, endpoints: o.Endpoints, watch: o.WatchNetwork}
	if d.watch == nil {
		tun := cfg.TUNName
		d.watch = func(ctx context.Context, notify func()) error { return watchNetlink(ctx, tun, notify) }
	}
	if d.newControl == nil {
		d.newControl = func(o controlclient.Options) (Control, error) { return controlclient.New(o) }
	}
	if d.endpoints == nil {
		tun := cfg.TUNName
		d.endpoints = func(port uint16, mesh []netip.Prefix) []netip.AddrPort { return localEndpoints(port, tun, mesh) }
	}
	if cfg.DNS.Enabled {
		d.dns = startDNS(cfg.DNS, log.With("part", "dns"))
	}
	return d, nil
}

// Start brings back the mesh from the cached netmap (so a router that
// reboots while coord is away keeps its tunnels) and connects to coord,
// when the node has joined and the user wants it running.
func (d *Daemon) Start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.bgCancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.bgCancel, d.bgDone = cancel, make(chan struct{})
	go func() {
		defer close(d.bgDone)
		d.refresher(ctx)
	}()
	if d.st.Joined() && d.st.Prefs.WantRunning {
		d.applyCacheLocked()
		d.startLoopLocked(nil)
	}
}

// Close stops the stream, writes the netmap cache if it is behind, and
// closes the engine (which removes its interface, routes and firewall
// table) and the DNS server.
func (d *Daemon) Close() error {
	d.stopLoop()
	d.mu.Lock()
	d.closed = true
	d.cancelReauthLocked()
	cancel, done := d.bgCancel, d.bgDone
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	d.mu.Lock()
	d.flushCacheOnCloseLocked()
	d.mu.Unlock()
	if d.dns != nil {
		d.dns.close()
	}
	return d.eng.Close()
}

// Status implements localapi.Backend.
func (d *Daemon) Status(context.Context) localapi.Status {
	peerStats := map[key.NodePublic]engine.PeerStatus{}
	for _, ps := range d.eng.Peers() {
		peerStats[ps.Key] = ps
	}
	devPeers := []string{}
	if dl, ok := d.eng.(engine.DeviceLister); ok {
		keys, err := dl.DevicePeers()
		if err != nil {
			d.log.Warn("cannot read the WireGuard device's peers", "err", err)
		}
		for _, k := range keys {
			devPeers = append(devPeers, k.String())
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := localapi.Status{BackendState: d.backendStateLocked(), Peers: []localapi.Peer{}}
	if br, ok := d.eng.(engine.BackendReporter); ok {
		s.WireGuard.Backend, s.WireGuard.Reason = br.Backend()
	}
	s.WireGuard.Peers = devPeers
	if d.coord.refused && d.coord.expired {
		s.NeedsReauth = true
		s.AuthURL = d.reauth.url
	}
	if d.st != nil {
		s.Coord.URL = d.st.LoginServer
	}
	s.Coord.Connected = d.coord.connected
	s.Coord.LastError = d.coord.lastErr
	if !d.coord.nextRetry.IsZero() {
		s.Coord.NextRetry = d.coord.nextRetry.UTC().Format(time.RFC3339)
	}
	s.DNS = d.dnsStatusLocked()
	s.EngineError = d.engineErr
	s.RejectedPeers = d.rejectedStatusLocked()
	if d.st.Joined() {
		self := &localapi.Node{
			ID: int64(d.st.NodeID), Name: d.st.Name, Key: d.st.NodeKey.Public().String(),
			Addresses:        nonNil(d.st.Addresses),
			AdvertisedRoutes: nonNil(advertisedRoutes(d.st.Prefs)),
			Routes:           []netip.Prefix{},
		}
		if d.nm != nil {
			self.Routes = nonNil(d.nm.self.Routes)
			self.CapMap = d.nm.self.CapMap
		}
		s.Self = self
	}
	if d.nm != nil {
		for _, p := range d.nm.sortedPeers() {
			lp := localapi.Peer{
				ID: int64(p.ID), Name: p.Name, Key: p.Key.String(), User: p.User, Tags: p.Tags,
				Addresses: nonNil(p.Addresses), Routes: nonNil(p.Routes), Online: p.Online,
			}
			if ps, ok := peerStats[p.Key]; ok {
				if ps.Endpoint.IsValid() {
					lp.Endpoint = ps.Endpoint.String()
				}
				lp.Path = ps.Path
				if lp.Path == "" {
					lp.Path = pathKind(ps.Endpoint)
				}
				lp.RelayInCoord = relayInCoord(lp.Path, d.nm.derp)
				if !ps.LastHandshake.IsZero() {
					lp.LastHandshake = ps.LastHandshake.UTC().Format(time.RFC3339)
				}
				lp.RxBytes, lp.TxBytes = ps.RxBytes, ps.TxBytes
			}
			s.Peers = append(s.Peers, lp)
		}
	}
	d.exitStatusLocked(&s)
	return s
}

func nonNil(p []netip.Prefix) []netip.Prefix {
	if p == nil {
		return []netip.Prefix{}
	}
	return slices.Clone(p)
}

// pathKind names how a peer is reached: relayed peers get a loopback
// endpoint owned by the agent (DESIGN.md, kernel backend).
func pathKind(ep netip.AddrPort) string {
	switch {
	case !ep.IsValid():
		return ""
	case ep.Addr().IsLoopback():
		return "relay"
	}
	return "direct"
}

func (d *Daemon) backendStateLocked() string {
	switch {
	case !d.st.Joined(), d.coord.refused:
		return localapi.StateNeedsLogin
	case !d.st.Prefs.WantRunning:
		return localapi.StateStopped
	case d.nm == nil:
		return localapi.StateStarting
	}
	return localapi.StateRunning
}

// Up implements localapi.Backend: it joins (with an auth key) or changes
// prefs and reconnects, and returns once the first full netmap arrived.
func (d *Daemon) Up(ctx context.Context, req localapi.UpRequest) (localapi.UpResponse, error) {
	d.upMu.Lock()
	defer d.upMu.Unlock()
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var ak wire.AuthKey
	if req.AuthKey != "" {
		var err error
		if ak, err = wire.ParseAuthKey(req.AuthKey); err != nil {
			return localapi.UpResponse{}, localapi.BadRequest("%v", err)
		}
	}

	d.mu.Lock()
	d.cancelReauthLocked() // `up` takes over from a background re-auth
	var st state.State
	if d.st != nil {
		st = *d.st
		st.Prefs.AdvertiseRoutes = slices.Clone(st.Prefs.AdvertiseRoutes)
	} else {
		st = *state.New() // keys are made once and stored before registering
	}
	d.mu.Unlock()

	if req.ForceReauth && req.AuthKey == "" {
		return localapi.UpResponse{}, localapi.BadRequest("--force-reauth without --auth-key needs a login first (lanmesh up --force-reauth logs in)")
	}
	if req.ForceReauth && st.Joined() {
		// A new node key, registered with the auth key below: same node
		// (the machine key), new WireGuard identity.
		st.NodeKey = key.NewNode()
	}
	if req.AuthKey == "" && !st.Joined() {
		return localapi.UpResponse{}, localapi.BadRequest("this node has not joined a mesh yet: run lanmesh up --login-server URL --auth-key KEY, or lanmesh login")
	}
	login := req.LoginServer
	if login == "" {
		login = st.LoginServer
	}
	if login == "" {
		return localapi.UpResponse{}, localapi.BadRequest("--login-server is required to join")
	}
	fp := req.CoordFingerprint
	if fp == "" {
		fp = ak.Fingerprint
	}
	if fp == "" && login == st.LoginServer {
		fp = st.CoordFingerprint
	}
	if fp != "" {
		if _, err := wire.ParseFingerprint(fp); err != nil {
			return localapi.UpResponse{}, localapi.BadRequest("%v", err)
		}
	}
	if login != st.LoginServer && st.Joined() {
		if req.AuthKey == "" {
			return localapi.UpResponse{}, localapi.BadRequest("this node is joined to %s; switching to %s needs --auth-key", st.LoginServer, login)
		}
		st.NodeID, st.Name, st.Addresses = 0, "", nil
	}
	oldPrefs := st.Prefs
	if req.AdvertiseRoutes != nil {
		rs := make([]netip.Prefix, 0, len(*req.AdvertiseRoutes))
		for _, r := range *req.AdvertiseRoutes {
			if !r.IsValid() {
				return localapi.UpResponse{}, localapi.BadRequest("advertise-routes: invalid prefix")
			}
			rs = appendUnique(rs, r.Masked())
		}
		slices.SortFunc(rs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		st.Prefs.AdvertiseRoutes = rs
	}
	if req.AcceptRoutes != nil {
		st.Prefs.AcceptRoutes = *req.AcceptRoutes
	}
	if req.SNATSubnetRoutes != nil {
		st.Prefs.SNATSubnetRoutes = *req.SNATSubnetRoutes
	}
	if req.Hostname != nil {
		st.Prefs.Hostname = *req.Hostname
	}
	if req.AdvertiseExitNode != nil {
		st.Prefs.AdvertiseExitNode = *req.AdvertiseExitNode
	}
	if req.ExitNode != nil {
		st.Prefs.ExitNode = strings.TrimSpace(*req.ExitNode)
	}
	if req.ExitNodeAllowLANAccess != nil {
		st.Prefs.ExitNodeAllowLANAccess = *req.ExitNodeAllowLANAccess
	}
	d.mu.Lock()
	nm := d.nm
	if d.st == nil || login != d.st.LoginServer {
		nm = nil // another mesh: its peers are unknown yet
	}
	err := checkExitPrefs(st.Prefs, nm)
	d.mu.Unlock()
	if err != nil {
		return localapi.UpResponse{}, err
	}
	st.Prefs.WantRunning = true
	serverChanged := login != st.LoginServer || !key.Equal([]byte(fp), []byte(st.CoordFingerprint))
	st.LoginServer, st.CoordFingerprint = login, fp

	if err := d.commit(&st); err != nil {
		return localapi.UpResponse{}, err
	}

	d.mu.Lock()
	// A loop coord refused for good (refused.go) is over: `up` starts a
	// new one rather than reading the old refusal back.
	running := d.loop != nil && !d.coord.refused
	d.mu.Unlock()
	if req.AuthKey != "" || serverChanged || !oldPrefs.Equal(st.Prefs) || !running {
		d.stopLoop()
	}

	d.mu.Lock()
	if d.loop == nil {
		var akp *wire.AuthKey
		if req.AuthKey != "" {
			akp = &ak
		}
		d.startLoopLocked(akp)
	}
	loop := d.loop
	d.mu.Unlock()

	select {
	case <-loop.ready:
	case err := <-loop.fatal:
		return localapi.UpResponse{}, err
	case err := <-loop.regErr:
		// A network failure: the loop keeps retrying with backoff, and
		// status shows the error; the user hears about it now.
		return localapi.UpResponse{}, &localapi.Error{Code: http.StatusBadGateway,
			Msg: fmt.Sprintf("cannot register with coord %s: %s (retrying in the background; \"lanmesh status\" shows progress)", login, shortErr(err))}
	case <-ctx.Done():
		d.mu.Lock()
		last := d.coord.lastErr
		if d.loop == loop && last == "" {
			// The first attempt is still in flight (a coord that drops
			// packets): status must still say why there is no netmap.
			d.coord.lastErr = fmt.Sprintf("no answer from coord %s within %v", login, timeout)
		}
		d.mu.Unlock()
		return localapi.UpResponse{}, &localapi.Error{Code: http.StatusGatewayTimeout, Msg: upTimeoutMsg(login, timeout, last)}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return localapi.UpResponse{Name: d.st.Name, Addresses: slices.Clone(d.st.Addresses)}, nil
}

// commit makes st the daemon's state and writes it (only when changed).
func (d *Daemon) commit(st *state.State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := state.Store(d.cfg.StateDir, st); err != nil {
		return err
	}
	d.st = st
	return nil
}

func (d *Daemon) hostname(p state.Prefs) string {
	if p.Hostname != "" {
		return p.Hostname
	}
	h, _ := os.Hostname()
	return h
}

// userError turns a coord refusal into the message `lanmesh up` prints.
func userError(err error) error {
	var se *controlclient.StatusError
	if errors.As(err, &se) {
		code := se.Code
		if code < 400 || code >= 500 {
			code = http.StatusBadGateway
		}
		return &localapi.Error{Code: code, Msg: se.Message}
	}
	return &localapi.Error{Code: http.StatusBadGateway, Msg: shortErr(err)}
}

// Down implements localapi.Backend: stop the stream and remove every peer.
// Keys and state stay, so `up` reconnects.
func (d *Daemon) Down(context.Context) error {
	d.upMu.Lock()
	defer d.upMu.Unlock()
	d.mu.Lock()
	d.cancelReauthLocked()
	d.mu.Unlock()
	d.stopLoop()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.st == nil {
		return nil
	}
	if d.st.Prefs.WantRunning {
		next := *d.st
		next.Prefs.WantRunning = false
		if _, err := state.Store(d.cfg.StateDir, &next); err != nil {
			return err
		}
		d.st = &next
	}
	d.nm = nil
	d.coord = coordConn{}
	d.updateDNSLocked()
	return d.reconfigLocked(engine.Config{PrivateKey: d.st.NodeKey})
}

// reconfigLocked hands cfg to the engine. No outcome is dropped: peers
// the engine left out (S19) are logged once and shown in status; any
// other failure is logged, shown in status (engine_error) and retried by
// the refresher, so a transient failure does not wait for the next netmap.
func (d *Daemon) reconfigLocked(cfg engine.Config) error {
	if configEqual(cfg, d.lastCfg) && !d.lastCfg.PrivateKey.IsZero() && d.retryCfg == nil {
		return nil
	}
	rej, err := d.eng.Reconfig(cfg)
	d.setRejectedLocked(rej)
	if err != nil {
		d.engineErr = err.Error()
		d.retryCfg = &cfg
		d.log.Error("engine reconfig failed; retrying", "err", err, "in", pollInterval)
		return fmt.Errorf("configure the data plane: %w", err)
	}
	if d.engineErr != "" {
		d.log.Info("engine reconfig works again")
	}
	d.engineErr, d.retryCfg = "", nil
	d.lastCfg = cfg
	d.log.Debug("engine reconfigured", "peers", len(cfg.Peers), "routes", len(cfg.Routes), "left_out", len(rej))
	return nil
}

// retryReconfigLocked re-applies a config whose Reconfig failed.
func (d *Daemon) retryReconfigLocked() {
	if d.retryCfg == nil || d.closed {
		return
	}
	_ = d.reconfigLocked(*d.retryCfg) // logged and kept for status by reconfigLocked
}

// setRejectedLocked records the peers the engine left out and logs the
// ones that are new or no longer left out, so a netmap that changes
// every few seconds does not repeat the same warning.
func (d *Daemon) setRejectedLocked(rej []engine.Rejected) {
	old := map[engine.Rejected]bool{}
	for _, r := range d.rejected {
		old[r] = true
	}
	now := map[engine.Rejected]bool{}
	for _, r := range rej {
		now[r] = true
		if !old[r] {
			d.log.Warn("peer left out of the data plane", "peer", r.Name, "node_key", r.Key.ShortString(), "reason", r.Reason)
		}
	}
	for _, r := range d.rejected {
		if !now[r] {
			d.log.Info("peer no longer left out", "peer", r.Name, "node_key", r.Key.ShortString())
		}
	}
	d.rejected = slices.Clone(rej)
}

// rejectedStatusLocked is the left-out peers as status shows them.
func (d *Daemon) rejectedStatusLocked() []localapi.RejectedPeer {
	out := []localapi.RejectedPeer{}
	for _, r := range d.rejected {
		rp := localapi.RejectedPeer{Name: r.Name, NodeKey: r.Key.String(), Reason: r.Reason}
		if d.nm != nil {
			for _, p := range d.nm.peers {
				if p.Key == r.Key && p.Name == r.Name {
					rp.ID = int64(p.ID)
				}
			}
		}
		out = append(out, rp)
	}
	return out
}
