package engine

import (
	"fmt"

	"github.com/lanmesh/lanmesh/agent/firewall"
	"github.com/lanmesh/lanmesh/agent/magicsock"
	"github.com/lanmesh/lanmesh/agent/router"
	"github.com/lanmesh/lanmesh/internal/key"
)

// WireGuard backends (Options.Backend).
const (
	BackendAuto      = "auto"
	BackendKernel    = "kernel"
	BackendUserspace = "userspace"
)

// BackendReporter is an engine that says which WireGuard backend runs and
// why it was chosen; `lanmesh status` shows both.
type BackendReporter interface {
	Backend() (name, reason string)
}

var _ BackendReporter = (*engine)(nil)

func (e *engine) Backend() (string, string) { return e.backend, e.backendWhy }

// setup makes the data plane with the configured backend. auto tries the
// kernel first and falls back to userspace, saying why in the log.
func (e *engine) setup() error {
	switch e.opts.Backend {
	case BackendUserspace:
		e.backend, e.backendWhy = BackendUserspace, "backend: userspace in config"
		return e.setupUserspace()
	case BackendKernel:
		if err := e.setupKernel(); err != nil {
			return fmt.Errorf("engine: kernel WireGuard backend (backend: kernel in config): %w", err)
		}
		e.backend, e.backendWhy = BackendKernel, "backend: kernel in config"
		return nil
	}
	err := e.setupKernel()
	if err == nil {
		e.backend, e.backendWhy = BackendKernel, "auto: the kernel has WireGuard"
		e.log.Info("WireGuard backend: kernel", "why", e.backendWhy)
		return nil
	}
	e.backend, e.backendWhy = BackendUserspace, "auto: kernel WireGuard unavailable: "+err.Error()
	e.log.Warn("kernel WireGuard unavailable, falling back to userspace WireGuard (wireguard-go)", "err", err)
	return e.setupUserspace()
}

// setupKernel makes the kernel backend: magicsock on the agent's port
// (disco, STUN, relay and every WireGuard packet on the wire), the
// `wireguard` link named TUNName whose peers' endpoints are the agent's
// loopback sockets, then routes and the firewall as in userspace mode.
func (e *engine) setupKernel() (err error) {
	o := e.opts
	bind := magicsock.New(magicsock.Options{
		// Packets come one by one from loopback sockets: no batching
		// offloads on the agent's socket.
		BatchSize: batchSize, Logger: e.log,
		OnPathChange: func(k key.NodePublic) { e.kick(k) },
		OnRelayUp:    func() { e.kick() },
		InNS:         e.runInNS,
		IgnoreIface:  o.TUNName,
	})
	recv, _, err := bind.Open(o.ListenPort)
	if err != nil {
		bind.Shutdown()
		return fmt.Errorf("listen on UDP port %d: %w", o.ListenPort, err)
	}
	dev, err := newKernelDevice(o.TUNName, o.MTU, bind, recv, e.log)
	if err != nil {
		bind.Close()
		bind.Shutdown()
		return err
	}
	defer func() {
		if err != nil {
			bind.Shutdown()
			dev.Close()
		}
	}()
	if e.router, err = router.New(o.TUNName, o.MTU, e.log); err != nil {
		return err
	}
	fw := firewall.New(e.log)
	fwCfg := firewall.Config{MeshIface: o.TUNName}
	if err := fw.Set(fwCfg); err != nil {
		e.router.Close()
		return err
	}
	e.bind, e.dev, e.fw, e.fwCfg = bind, dev, fw, fwCfg
	e.log.Info("data plane up", "backend", "kernel", "port", bind.Port(), "kernel_port", dev.port, "mtu", o.MTU)
	return nil
}

// DeviceLister is an engine that lists the peers configured in its
// WireGuard device right now, read from the device (UAPI or netlink),
// not from the config it was given: tests and `lanmesh status --json`
// (wireguard.peers) use it to prove a revoked or expired peer is gone
// from the data plane.
type DeviceLister interface {
	DevicePeers() ([]key.NodePublic, error)
}

var _ DeviceLister = (*engine)(nil)

func (e *engine) DevicePeers() ([]key.NodePublic, error) {
	var out []key.NodePublic
	err := e.do(func() error {
		st, err := e.dev.Peers()
		if err != nil {
			return err
		}
		for _, p := range st {
			out = append(out, p.Key)
		}
		return nil
	})
	return out, err
}
