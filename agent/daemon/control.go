package daemon

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Backoff between netmap stream attempts.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// mapLoop is one run of the netmap stream loop; `up` with new prefs, or
// `down`, ends it and a new one starts.
type mapLoop struct {
	gen    int
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{} // closed on the first full netmap
	fatal  chan error    // first refusal by coord before any netmap (for `up`)
}

// errStale ends a stream whose loop was replaced.
var errStale = errors.New("netmap stream replaced")

func (d *Daemon) startLoopLocked() {
	d.gen++
	ctx, cancel := context.WithCancel(context.Background())
	l := &mapLoop{gen: d.gen, cancel: cancel, done: make(chan struct{}),
		ready: make(chan struct{}), fatal: make(chan error, 1)}
	d.loop = l
	st := *d.st
	go func() {
		defer close(l.done)
		d.runLoop(ctx, l, st.LoginServer, st.CoordFingerprint)
	}()
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

// runLoop keeps one netmap stream open, forever, with exponential backoff
// and jitter between attempts. While coord is away the engine keeps its
// last config, so existing traffic keeps flowing.
func (d *Daemon) runLoop(ctx context.Context, l *mapLoop, server, fp string) {
	d.mu.Lock()
	mk := d.st.MachineKey
	d.mu.Unlock()
	cc, err := d.newControl(controlclient.Options{ServerURL: server, Fingerprint: fp, MachineKey: mk, Logger: d.log.With("part", "control")})
	if err != nil {
		d.mu.Lock()
		d.coord.lastErr = err.Error()
		d.mu.Unlock()
		l.fatal <- localapi.BadRequest("%v", err)
		return
	}
	backoff := minBackoff
	for {
		nm := &netmap{}
		err := cc.Map(ctx, d.mapRequest(), func(m *wire.MapMessage) error { return d.handle(l, nm, m) })
		if ctx.Err() != nil {
			return
		}
		if nm.full {
			backoff = minBackoff // the stream worked; start over
		}
		wait := jitter(backoff)
		backoff = min(backoff*2, maxBackoff)

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
		if !nm.full && errors.As(err, &se) && se.Code >= 400 && se.Code < 500 {
			select { // tell a waiting `up`; the loop still retries
			case l.fatal <- userError(err):
			default:
			}
		}
		d.log.Warn("netmap stream ended; retrying", "err", shortErr(err), "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
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
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Error()
	}
	return err.Error()
}

func (d *Daemon) mapRequest() wire.MapRequest {
	d.mu.Lock()
	st := *d.st
	d.mu.Unlock()
	return wire.MapRequest{
		NodeKey:         st.NodeKey.Public(),
		Endpoints:       d.endpoints(d.eng.ListenPort(), meshPrefixes(st.Addresses)),
		AdvertiseRoutes: slices.Clone(st.Prefs.AdvertiseRoutes),
		Hostname:        d.hostname(st.Prefs),
	}
}

// handle applies one stream message: netmap, state (self's name and
// addresses), engine.
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
		// A failed Reconfig is logged; the next netmap tries again. The
		// stream stays up so status keeps telling the truth.
		_ = d.reconfigLocked(engineConfig(d.st.NodeKey, nm, d.st.Prefs))
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
