package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/lanmesh/lanmesh/agent/firewall"
	"github.com/lanmesh/lanmesh/agent/magicsock"
	"github.com/lanmesh/lanmesh/agent/router"
	"github.com/lanmesh/lanmesh/internal/key"
)

// Defaults for Options left zero.
const (
	DefaultTUNName = "lanmesh0"
	DefaultMTU     = 1420
	// DefaultMaxInflightPackets was picked by measurement (make bench,
	// a1 -> b1 through two routers on 2 cores, 38 MiB Go memory limit,
	// median of 5 against stock wireguard-go in the same run): 40: 0.91x,
	// 64: 1.02x and 1.04x, 96: 0.95x, 128: 0.92x and 0.93x. Each packet
	// pins a 64 KiB buffer, and the readers already pin 16 MiB; above 64
	// the live heap sits at the memory limit, the GC runs ~30 times a
	// second and empties wireguard-go's pools each time; below it the
	// pipeline starves.
	DefaultMaxInflightPackets = 64
	// creditTTL: in-flight credit older than this counts as dropped.
	creditTTL = 500 * time.Millisecond
)

type engine struct {
	opts Options
	log  *slog.Logger

	work    chan func()   // runs on a thread in the engine's network namespace
	dead    chan struct{} // closed: the worker is gone
	stop    chan struct{} // closed: no more kicks
	done    sync.WaitGroup
	kicks   sync.WaitGroup
	kickMu  sync.Mutex
	closeMu sync.Once
	ns      netns.NsHandle // the engine's namespace, for magicsock's later sockets

	appliedMu sync.Mutex
	peerKeys  []key.NodePublic // configured peers, for kick
	selfKey   key.NodePublic   // our public key, for kick (who initiates)

	// Owned by the worker goroutine (Kick may run elsewhere: kick).
	dev  Device
	bind *magicsock.Conn
	// backend is "kernel" or "userspace", backendWhy why (set by setup).
	backend, backendWhy string
	router              *router.Router
	fw                  *firewall.Firewall
	// applied is the last config that applied in full; devKey and
	// devPeers are what the device holds (devPeers nil: unknown, so
	// the next Apply replaces every peer).
	applied  *Config
	devKey   key.NodePrivate
	devPeers map[key.NodePublic]Peer
	fwCfg    firewall.Config
}

var (
	_ Engine         = (*engine)(nil)
	_ EndpointLister = (*engine)(nil)
	_ NetworkChanger = (*engine)(nil)
	_ HomeRegioner   = (*engine)(nil)
	_ Netchecker     = (*engine)(nil)
)

// New creates the TUN, the WireGuard device on our Bind, the link setup
// and the nftables table, in the calling thread's network namespace (the
// daemon's, or a test's), and keeps using that namespace for every later
// change whichever goroutine calls.
func New(opts Options, logger *slog.Logger) (Engine, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if opts.TUNName == "" {
		opts.TUNName = DefaultTUNName
	}
	if opts.MTU == 0 {
		opts.MTU = DefaultMTU
	}
	if opts.MTU < 1280 || opts.MTU > 65535-80 {
		return nil, fmt.Errorf("engine: MTU %d out of range (1280..65455)", opts.MTU)
	}
	if opts.MaxInflightPackets <= 0 {
		opts.MaxInflightPackets = DefaultMaxInflightPackets
	}
	switch opts.Backend {
	case "":
		opts.Backend = BackendAuto
	case BackendAuto, BackendKernel, BackendUserspace:
	default:
		return nil, fmt.Errorf("engine: backend %q: want auto, kernel or userspace", opts.Backend)
	}
	e := &engine{
		opts: opts,
		log:  logger.With("component", "engine", "tun", opts.TUNName),
		work: make(chan func()),
		dead: make(chan struct{}),
		stop: make(chan struct{}),
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("engine: current network namespace: %w", err)
	}
	if e.ns, err = netns.Get(); err != nil {
		ns.Close()
		return nil, fmt.Errorf("engine: current network namespace: %w", err)
	}
	started := make(chan error, 1)
	e.done.Add(1)
	go e.worker(ns, started)
	if err := <-started; err != nil {
		return nil, err
	}
	if err := e.do(e.setup); err != nil {
		close(e.dead)
		e.done.Wait()
		e.ns.Close()
		return nil, err
	}
	return e, nil
}

// worker owns one OS thread in the engine's namespace: sockets (netlink,
// nftables, UDP on rebind) and /proc/sys writes land in the namespace of
// the thread that opens them. The thread is never unlocked, so it dies with
// the goroutine instead of returning to the pool in a foreign namespace.
func (e *engine) worker(ns netns.NsHandle, started chan<- error) {
	defer e.done.Done()
	defer ns.Close()
	runtime.LockOSThread()
	if err := netns.Set(ns); err != nil {
		started <- fmt.Errorf("engine: enter network namespace: %w", err)
		return
	}
	started <- nil
	for {
		select {
		case f := <-e.work:
			f()
		case <-e.dead:
			return
		}
	}
}

// ErrClosed is returned by calls on a closed engine.
var ErrClosed = errors.New("engine: closed")

func (e *engine) do(f func() error) error {
	errc := make(chan error, 1)
	select {
	case e.work <- func() { errc <- f() }:
		return <-errc
	case <-e.dead:
		return ErrClosed
	}
}

// setupUserspace makes the userspace backend: a TUN and wireguard-go on
// magicsock.
func (e *engine) setupUserspace() (err error) {
	o := e.opts
	t, maxSegs, err := createTUN(o.TUNName, o.MTU, o.Offloads.TUN, batchSize, e.log)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	out, in := newInflight(o.MaxInflightPackets, creditTTL), newInflight(o.MaxInflightPackets, creditTTL)
	ft := &flowTUN{Device: t, out: out, in: in, batch: maxSegs}
	e.bind = magicsock.New(magicsock.Options{
		GSO: o.Offloads.UDPGSO, GRO: o.Offloads.UDPGRO, BatchSize: batchSize, Logger: e.log,
		OnPathChange: func(k key.NodePublic) { e.kick(k) },
		OnRelayUp:    func() { e.kick() },
		InNS:         e.runInNS,
		IgnoreIface:  o.TUNName,
	})
	dev, err := newUAPIDevice(ft, &flowBind{Conn: e.bind, out: out, in: in}, o.ListenPort, e.log)
	if err != nil {
		e.bind.Shutdown()
		return fmt.Errorf("engine: %w", err)
	}
	e.dev = dev
	defer func() {
		if err != nil {
			e.bind.Shutdown()
			e.dev.Close()
		}
	}()
	if o.UAPISocket {
		if err = dev.serveUAPI(o.TUNName, e.log); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	}
	if e.router, err = router.New(o.TUNName, o.MTU, e.log); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	e.fw = firewall.New(e.log)
	e.fwCfg = firewall.Config{MeshIface: o.TUNName}
	if err := e.fw.Set(e.fwCfg); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	e.log.Info("data plane up", "port", e.bind.Port(), "mtu", o.MTU,
		"tun_offload", o.Offloads.TUN, "udp_gso", o.Offloads.UDPGSO, "udp_gro", o.Offloads.UDPGRO,
		"max_inflight", o.MaxInflightPackets)
	return nil
}

// Reconfig applies cfg, touching only what changed. Invalid peers are
// left out and returned (validatePeers); everything else applies.
func (e *engine) Reconfig(cfg Config) ([]Rejected, error) {
	if cfg.PrivateKey.IsZero() {
		return nil, errors.New("engine: config has no private key")
	}
	cfg, rejected, routeErr := ValidateConfig(cfg)
	err := e.do(func() error { return e.reconfig(cfg) })
	if routeErr != nil {
		err = errors.Join(routeErr, err)
	}
	return rejected, err
}

// reconfig applies a sanitized cfg: the device's peers through the
// Device seam, then magicsock, routes and firewall. A failure in one part
// does not hold back the others (a revocation must reach the firewall
// even when the device refused a change); applied stays old then, so the
// next Reconfig retries.
func (e *engine) reconfig(cfg Config) error {
	if e.applied != nil && reflect.DeepEqual(*e.applied, cfg) {
		return nil
	}
	var errs []error
	self := cfg.PrivateKey.Public()
	keyChanged := !cfg.PrivateKey.Equal(e.devKey)
	ch := DeviceChanges{ReplacePeers: e.devPeers == nil}
	if keyChanged {
		ch.PrivateKey = cfg.PrivateKey
	}
	ch.Peers = diffPeers(self, e.devPeers, cfg.Peers, keyChanged)
	if err := e.dev.Apply(ch); err != nil {
		errs = append(errs, fmt.Errorf("engine: %w", err))
		e.devKey, e.devPeers = key.NodePrivate{}, nil // unknown: replace all next time
	} else {
		e.devKey = cfg.PrivateKey
		e.devPeers = make(map[key.NodePublic]Peer, len(cfg.Peers))
		for _, p := range cfg.Peers {
			e.devPeers[p.Key] = p
		}
		for _, c := range ch.Peers {
			e.log.Debug("peer "+c.Op.String(), "peer", c.Key.ShortString(), "allowed_ips", c.AllowedIPs)
		}
	}
	keys := make([]key.NodePublic, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		keys = append(keys, p.Key)
	}
	e.appliedMu.Lock()
	e.peerKeys = keys
	e.selfKey = self
	e.appliedMu.Unlock()
	if err := e.bind.SetConfig(cfg.PrivateKey, discoPeers(cfg), cfg.DERPMap); err != nil {
		errs = append(errs, fmt.Errorf("engine: %w", err))
	}
	if err := e.router.Set(router.Config{Addresses: cfg.Addresses, Routes: cfg.Routes,
		Forwarding: len(cfg.AdvertisedRoutes) > 0,
		Exit:       router.ExitConfig{Routes: cfg.ExitRoutes, AllowLAN: cfg.ExitAllowLAN}}); err != nil {
		errs = append(errs, fmt.Errorf("engine: %w", err))
	}
	fwCfg := firewall.Config{MeshIface: e.opts.TUNName, SNAT: cfg.SNAT, Filter: cfg.Filter,
		Addresses: cfg.Addresses, AdvertisedRoutes: cfg.AdvertisedRoutes}
	if !fwCfg.Equal(e.fwCfg) {
		if err := e.fw.Set(fwCfg); err != nil {
			errs = append(errs, fmt.Errorf("engine: %w", err))
		} else {
			e.fwCfg = fwCfg
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err // applied stays old: the next Reconfig retries the rest
	}
	c := cfg
	c.Peers = slices.Clone(cfg.Peers)
	e.applied = &c
	return nil
}

// Peers reports every configured peer, in config order.
func (e *engine) Peers() []PeerStatus {
	var out []PeerStatus
	_ = e.do(func() error {
		st, err := e.dev.Peers()
		if err != nil {
			e.log.Warn("peer status", "err", err)
			return err
		}
		byKey := map[key.NodePublic]PeerStatus{}
		for _, p := range st {
			byKey[p.Key] = p
		}
		if e.applied != nil {
			for _, p := range e.applied.Peers {
				if s, ok := byKey[p.Key]; ok {
					s.Path, s.Endpoint = e.bind.PeerPath(p.Key)
					out = append(out, s)
				}
			}
		}
		return nil
	})
	return out
}

func (e *engine) ListenPort() uint16 { return e.bind.Port() }

// Close removes the nftables table, our routes and the interface.
func (e *engine) Close() error {
	var err error
	e.closeMu.Do(func() {
		e.appliedMu.Lock()
		close(e.stop)
		e.appliedMu.Unlock()
		e.bind.Shutdown()
		e.kicks.Wait()
		err = e.do(func() error {
			errs := []error{e.fw.Close(), e.router.Close()}
			errs = append(errs, e.dev.Close()) // the TUN (the link goes) and the sockets
			return errors.Join(errs...)
		})
		close(e.dead)
		e.done.Wait()
		e.ns.Close()
	})
	return err
}
