package daemon

import (
	"errors"
	"os"

	"github.com/lanmesh/lanmesh/agent/engine"
	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// refused handles coord's final refusal of the netmap stream (the node
// was deleted, its key expired, its user was disabled, or coord holds
// another node key): the node leaves the mesh at once (no peers, no
// filter rules, no DNS names, no netmap cache to come back from, S20),
// status says NeedsLogin with what happened and what to do, and nothing
// is retried: retrying cannot fix it and would only hammer coord.
// "lanmesh up" starts over.
func (d *Daemon) refused(l *mapLoop, se *controlclient.StatusError) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loop != l {
		return
	}
	msg := refusalMessage(se)
	d.coord = coordConn{lastErr: msg, refused: true, expired: se.Reason == wire.ReasonNodeExpired}
	d.nm = nil
	d.updateDNSLocked()
	if d.cache.timer != nil {
		d.cache.timer.Stop()
		d.cache.timer = nil
	}
	d.cache.dirty = false
	if err := os.Remove(state.NetmapPath(d.cfg.NetmapCacheDir())); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Error("cannot remove the netmap cache of a refused node", "err", err)
	}
	if err := d.reconfigLocked(engine.Config{PrivateKey: d.st.NodeKey}); err != nil {
		d.log.Error("cannot drop the peers of a refused node", "err", err) // retried by the refresher
	}
	d.log.Warn("coord refused this node; it left the mesh and will not retry", "reason", se.Reason, "err", se.Message)
	if d.coord.expired {
		d.startReauthLocked() // needs re-auth: ask coord for a login URL
	}
	select { // tell a waiting `up`
	case l.fatal <- userError(se):
	default:
	}
}

// refusalMessage is status's coord.last_error for a final refusal.
func refusalMessage(se *controlclient.StatusError) string {
	what, todo := "coord refused this node", "run lanmesh up --auth-key KEY to join again"
	switch se.Reason {
	case wire.ReasonNotRegistered:
		what = "this node was deleted by the mesh admin"
	case wire.ReasonNodeExpired:
		what, todo = "this node's key has expired (needs re-auth)", "log in again at the URL status shows (lanmesh login), or run lanmesh up --auth-key KEY"
	case wire.ReasonNodeKeyMismatch:
		what = "coord holds another node key for this machine"
	case wire.ReasonUserDisabled:
		what, todo = "this node's user is disabled", "once the admin enables the user (lanmesh-coord users enable), run lanmesh up"
	}
	return what + " (coord: " + se.Message + "); not retrying: " + todo
}
