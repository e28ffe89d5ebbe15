package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"slices"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/sockmark"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Backoff between netmap stream attempts: 1, 2, 3, 3, ... s, each ±20%
// (jitter), so an agent is back at most ~3.6 s after coord returns (it
// took 13-17 s with a 30 s cap). A failed attempt against a down coord is
// a refused TCP connection, cheap for both ends; coord's per-source
// limits (S18) keep a crowd of reconnecting nodes in check. Registration,
// which costs coord a store transaction, keeps backing off to 30 s.
const (
	minBackoff         = time.Second
	maxBackoff         = 3 * time.Second
	maxRegisterBackoff = 30 * time.Second
	// registerTimeout bounds one registration attempt, so a coord that
	// swallows packets is retried instead of waited on forever.
	registerTimeout = 15 * time.Second
)

// mapLoop is one run of the coord loop (registration when joining, then
// the netmap stream); `up` with new prefs, or `down`, ends it and a new
// one starts.
type mapLoop struct {
	gen    int
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{} // closed on the first full netmap
	fatal  chan error    // first refusal by coord before any netmap (for `up`)
	// regErr gets the first failed registration attempt that will be
	// retried, so `up` answers at once instead of at its timeout.
	regErr chan error
	// stream cancels the netmap stream in flight (guarded by Daemon.mu);
	// restartStreamLocked uses it to send a new MapRequest.
	stream context.CancelCauseFunc
}

var (
	// errStale ends a stream whose loop was replaced.
	errStale = errors.New("netmap stream replaced")
	// errRestart ends a stream so a new MapRequest (endpoints, LAN hosts)
	// reaches coord; the loop reconnects at once, without backoff.
	errRestart = errors.New("netmap stream restarted with a new request")
)

// startLoopLocked starts a coord loop. With ak it registers first; the
// auth key lives only in this loop's memory (never stored or logged, S11)
// so that a network failure can be retried.
func (d *Daemon) startLoopLocked(ak *wire.AuthKey) *mapLoop {
	d.gen++
	ctx, cancel := context.WithCancel(context.Background())
	l := &mapLoop{gen: d.gen, cancel: cancel, done: make(chan struct{}),
		ready: make(chan struct{}), fatal: make(chan error, 1), regErr: make(chan error, 1)}
	d.loop = l
	d.coord = coordConn{}
	st := *d.st
	go func() {
		defer close(l.done)
		d.runLoop(ctx, l, st.LoginServer, st.CoordFingerprint, ak)
	}()
	return l
}

// stopLoop ends the running loop and waits for it. It must not be called
// with d.mu held: the loop's message handler takes it.
func (d *Daemon) stopLoop() {
	d.mu.Lock()
	l := d.loop
	d.loop = nil
	d.coord.connected = false
	d.coord.nextRetry = time.Time{}
	d.mu.Unlock()
	if l != nil {
		l.cancel()
		<-l.done
	}
}

// restartStreamLocked makes the loop reopen its netmap stream with a
// fresh MapRequest. Without a stream in flight there is nothing to do:
// the next attempt builds a fresh request anyway.
func (d *Daemon) restartStreamLocked(why string) {
	if d.loop != nil && d.loop.stream != nil {
		d.log.Info("reopening the netmap stream", "why", why)
		d.loop.stream(errRestart)
	}
}

// runLoop registers (when given an auth key) and then keeps one netmap
// stream open, forever, with exponential backoff and jitter between
// attempts. While coord is away the engine keeps its last config, so
// existing traffic keeps flowing.
func (d *Daemon) runLoop(ctx context.Context, l *mapLoop, server, fp string, ak *wire.AuthKey) {
	d.mu.Lock()
	mk := d.st.MachineKey
	d.mu.Unlock()
	cc, err := d.newControl(controlclient.Options{ServerURL: server, Fingerprint: fp, MachineKey: mk, Logger: d.log.With("part", "control"), Control: sockmark.Control})
	if err != nil {
		d.mu.Lock()
		d.coord.lastErr = err.Error()
		d.mu.Unlock()
		l.fatal <- localapi.BadRequest("%v", err)
		return
	}
	if ak != nil && !d.registerLoop(ctx, l, cc, *ak) {
		return
	}
	backoff := minBackoff
	for {
		nm := &netmap{}
		sctx, scancel := context.WithCancelCause(ctx)
		d.mu.Lock()
		if d.loop != l {
			d.mu.Unlock()
			scancel(errStale)
			return
		}
		l.stream = scancel
		d.mu.Unlock()
		err := cc.Map(sctx, d.mapRequest(), func(m *wire.MapMessage) error { return d.handle(l, nm, m) })
		restarted := errors.Is(context.Cause(sctx), errRestart)
		scancel(nil)
		if ctx.Err() != nil {
			return
		}
		if restarted {
			continue // a new request, not a failure: no backoff
		}
		if nm.full {
			backoff = minBackoff // the stream worked; start over
		}
		if se := (*controlclient.StatusError)(nil); errors.As(err, &se) && se.NeedsLogin() {
			d.refused(l, se) // deleted, expired or disabled: leave, no retry
			return
		}
		wait := jitter(backoff)
		backoff = min(backoff*2, maxBackoff)
		if se := (*controlclient.StatusError)(nil); errors.As(err, &se) && se.Busy() {
			wait = max(wait, se.RetryAfter) // coord's rate limit (S18)
		}

		d.mu.Lock()
		stale := d.loop != l
		if !stale {
			d.coord.connected = false
			d.coord.lastErr = shortErr(err)
			d.coord.nextRetry = time.Now().Add(wait)
		}
		d.mu.Unlock()
		if stale {
			return
		}
		var se *controlclient.StatusError
		if !nm.full && errors.As(err, &se) && se.Code >= 400 && se.Code < 500 && !se.Busy() {
			select { // tell a waiting `up`; the loop still retries
			case l.fatal <- userError(err):
			default:
			}
		}
		d.log.Warn("netmap stream ended; retrying", "err", shortErr(err), "in", wait.Round(time.Millisecond))
		if !sleep(ctx, wait) {
			return
		}
	}
}

// registerLoop joins the mesh with ak, retrying network failures with
// backoff. A refusal by coord (4xx) is final: retrying a rejected key
// only hammers coord. It reports whether the node is now registered.
func (d *Daemon) registerLoop(ctx context.Context, l *mapLoop, cc Control, ak wire.AuthKey) bool {
	backoff := minBackoff
	for {
		d.mu.Lock()
		st := *d.st
		d.mu.Unlock()
		d.log.Info("registering", "server", st.LoginServer, "auth_key", ak.Redacted())
		rctx, cancel := context.WithTimeout(ctx, registerTimeout)
		resp, err := cc.Register(rctx, wire.RegisterRequest{
			AuthKey: ak.WithoutFingerprint(), NodeKey: st.NodeKey.Public(), Hostname: d.hostname(st.Prefs), OS: runtime.GOOS,
		})
		cancel()
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			if err = d.registered(l, resp.Node); err == nil {
				return true
			}
		}
		var se *controlclient.StatusError
		var le *localapi.Error
		// 429 (coord's rate limit, S18) only says "not now".
		final := errors.As(err, &le) || (errors.As(err, &se) && se.Code >= 400 && se.Code < 500 && !se.Busy())
		wait := jitter(backoff)
		if se != nil && se.Busy() {
			wait = max(wait, se.RetryAfter)
		}
		backoff = min(backoff*2, maxRegisterBackoff)

		d.mu.Lock()
		if d.loop != l {
			d.mu.Unlock()
			return false
		}
		d.coord.connected = false
		d.coord.lastErr = shortErr(err)
		d.coord.nextRetry = time.Time{}
		if !final {
			d.coord.nextRetry = time.Now().Add(wait)
		}
		d.mu.Unlock()

		if final {
			d.log.Warn("coord refused the registration", "server", st.LoginServer, "err", shortErr(err))
			l.fatal <- userError(err)
			return false
		}
		select {
		case l.regErr <- err:
		default:
		}
		d.log.Warn("registration failed; retrying", "server", st.LoginServer, "err", shortErr(err), "in", wait.Round(time.Millisecond))
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// registered records coord's answer to a registration in the state file.
func (d *Daemon) registered(l *mapLoop, n wire.Node) error {
	if n.ID == 0 || len(n.Addresses) == 0 {
		return &localapi.Error{Code: http.StatusBadGateway, Msg: "coord answered the registration without a node ID or addresses"}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loop != l {
		return errStale
	}
	next := *d.st
	next.NodeID, next.Name, next.Addresses = n.ID, n.Name, slices.Clone(n.Addresses)
	if _, err := state.Store(d.cfg.StateDir, &next); err != nil {
		return &localapi.Error{Code: http.StatusInternalServerError, Msg: err.Error()}
	}
	d.st = &next
	d.log.Info("registered", "node", n.Name, "id", n.ID)
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jitter spreads retries of many nodes over ±20% of d.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// shortErr is the error as status shows it: the innermost network error
// ("dial tcp 198.18.0.2:443: connect: connection refused") or coord's
// message, not the chain of wrappers around it.
func shortErr(err error) string {
	if err == nil {
		return ""
	}
	var se *controlclient.StatusError
	if errors.As(err, &se) {
		return se.Message
	}
	var le *localapi.Error
	if errors.As(err, &le) {
		return le.Msg
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Error()
	}
	return err.Error()
}

// mapRequest builds the stream's request and remembers what it reported,
// so the refresher knows when coord's view is out of date.
func (d *Daemon) mapRequest() wire.MapRequest {
	eps := d.currentEndpoints()
	region := d.homeRegion()
	d.mu.Lock()
	defer d.mu.Unlock()
	st := *d.st
	d.sent.endpoints = eps
	d.sent.homeRegion = region
	d.sent.lanHosts = slices.Clone(d.lanHosts)
	return wire.MapRequest{
		NodeKey:         st.NodeKey.Public(),
		Endpoints:       eps,
		AdvertiseRoutes: advertisedRoutes(st.Prefs),
		Hostname:        d.hostname(st.Prefs),
		LANHosts:        slices.Clone(d.lanHosts),
		HomeRegion:      region,
	}
}

// handle applies one stream message: netmap, state (self's name and
// addresses), engine, DNS and the netmap cache.
func (d *Daemon) handle(l *mapLoop, nm *netmap, m *wire.MapMessage) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loop != l {
		return errStale
	}
	changed, err := nm.apply(m)
	if err != nil {
		return err
	}
	if !nm.full {
		return nil
	}
	d.coord = coordConn{connected: true}
	d.nm = nm
	if m.Self != nil {
		d.updateSelfLocked(m.Self)
	}
	if changed {
		// Bad peers are left out and everything else applies (S19). A
		// failed Reconfig is logged, shown in status and retried by the
		// refresher; the stream stays up so later netmaps (revocations,
		// filter updates) keep coming and keep being applied.
		if err := d.reconfigLocked(engineConfig(d.st.NodeKey, nm, d.st.Prefs)); err != nil {
			d.log.Warn("netmap applied in part", "seq", nm.seq, "err", err)
		}
		d.updateDNSLocked()
		d.netmapChangedLocked()
	}
	if m.Full {
		select {
		case <-l.ready:
		default:
			close(l.ready)
			d.log.Info("netmap received", "node", nm.self.Name, "peers", len(nm.peers))
		}
	}
	return nil
}

// updateSelfLocked records coord's view of this node in the state file;
// Store writes only when it changed.
func (d *Daemon) updateSelfLocked(self *wire.Node) {
	if self.Key != d.st.NodeKey.Public() {
		d.log.Warn("coord's netmap names a different node key for this node", "got", self.Key.ShortString())
	}
	next := *d.st
	if self.ID != 0 {
		next.NodeID = self.ID
	}
	if self.Name != "" {
		next.Name = self.Name
	}
	if len(self.Addresses) > 0 {
		next.Addresses = slices.Clone(self.Addresses)
	}
	if _, err := state.Store(d.cfg.StateDir, &next); err != nil {
		d.log.Error("cannot write state", "err", err)
		return
	}
	d.st = &next
}

// upTimeoutMsg is what `up` says when no netmap came in time.
func upTimeoutMsg(server string, timeout time.Duration, last string) string {
	msg := fmt.Sprintf("no answer from coord %s within %v", server, timeout)
	if last != "" {
		msg = fmt.Sprintf("no netmap from coord %s within %v: %s", server, timeout, last)
	}
	return msg + " (still trying; \"lanmesh status\" shows progress)"
}
