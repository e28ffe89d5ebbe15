package daemon

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Re-authentication after coord refused this node because its key
// expired (refused.go). The node is out of the mesh; rather than wait for
// someone to run `lanmesh login`, the agent asks coord for a login URL
// itself, shows it in status (auth_url, "needs re-auth"), and waits for
// the login in the background. When the person logs in, coord renews
// the same node (addresses and name kept, fresh key expiry) and the agent
// comes back up on its own. A coord without an identity provider answers
// 501: status then says to run `lanmesh up --auth-key KEY`.
//
// `up`, `down`, `login`, `logout` and Close cancel this (cancelReauthLocked):
// they take over.

// reauthState is the background re-authentication; guarded by Daemon.mu.
type reauthState struct {
	cancel context.CancelFunc // nil: none running
	url    string             // the login URL to show, "" until coord gave one
	err    string             // why there is no URL (or the last login failed)
}

// Backoff of the re-auth loop after a failed attempt.
const (
	reauthMinBackoff = 2 * time.Second
	reauthMaxBackoff = time.Minute
)

// pendingKey is a new node key waiting for a login to finish (lanmesh up
// --force-reauth); guarded by Daemon.mu.
type pendingKey struct {
	loginID string
	key     key.NodePrivate
}

// startReauthLocked starts the background re-authentication (once).
func (d *Daemon) startReauthLocked() {
	if d.reauth.cancel != nil || d.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.reauth = reauthState{cancel: cancel}
	go d.reauthLoop(ctx)
}

// cancelReauthLocked stops the background re-authentication without
// waiting for it: it holds no lock while it waits, and every step that
// changes state first checks its context.
func (d *Daemon) cancelReauthLocked() {
	if d.reauth.cancel != nil {
		d.reauth.cancel()
	}
	d.reauth = reauthState{}
}

func (d *Daemon) setReauth(ctx context.Context, url, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ctx.Err() == nil {
		d.reauth.url, d.reauth.err = url, msg
	}
}

func (d *Daemon) reauthLoop(ctx context.Context) {
	backoff := reauthMinBackoff
	fail := func(msg string) bool {
		d.setReauth(ctx, "", msg)
		d.log.Warn("re-authentication: no login URL yet; retrying", "err", msg, "in", backoff)
		ok := sleep(ctx, jitter(backoff))
		backoff = min(backoff*2, reauthMaxBackoff)
		return ok
	}
	for ctx.Err() == nil {
		lc, st, err := d.loginClient("", "")
		if err != nil {
			d.setReauth(ctx, "", err.Error())
			return
		}
		lr, err := lc.Login(ctx, wire.LoginRequest{NodeKey: st.NodeKey.Public(), Hostname: d.hostname(st.Prefs), OS: runtime.GOOS})
		var se *controlclient.StatusError
		switch {
		case ctx.Err() != nil:
			return
		case errors.As(err, &se) && se.Code == http.StatusNotImplemented:
			d.setReauth(ctx, "", "coord has no identity provider: run lanmesh up --auth-key KEY")
			return
		case err != nil:
			if !fail(shortErr(err)) {
				return
			}
			continue
		}
		d.setReauth(ctx, lr.URL, "")
		d.log.Warn("this node's key expired: log in again to bring it back", "url", lr.URL)
		done, ok := d.reauthWait(ctx, lc, lr.ID)
		if !ok {
			return
		}
		if done {
			return
		}
		backoff = reauthMinBackoff // the URL expired unused: a fresh one now
	}
}

// reauthWait long-polls one login. done: the node is registered again
// (and restarted); ok false: stop the loop.
func (d *Daemon) reauthWait(ctx context.Context, lc loginControl, id string) (done, ok bool) {
	backoff := reauthMinBackoff
	for {
		r, err := lc.LoginWait(ctx, id)
		var se *controlclient.StatusError
		switch {
		case ctx.Err() != nil:
			return false, false
		case errors.As(err, &se) && se.Code == http.StatusNotFound:
			return false, true // expired or finished elsewhere: new login
		case err != nil:
			if !sleep(ctx, jitter(backoff)) {
				return false, false
			}
			backoff = min(backoff*2, reauthMaxBackoff)
			continue
		case !r.Done:
			continue
		case strings.Contains(r.Error, "replaced"):
			return false, false // someone runs `lanmesh login`: theirs wins
		case r.Error != "" || r.Node == nil:
			d.log.Warn("re-authentication failed", "err", r.Error)
			d.setReauth(ctx, "", r.Error)
			return false, sleep(ctx, reauthMinBackoff)
		}
		return true, d.reauthDone(ctx, r.Node, r.User)
	}
}

// reauthDone records the renewed registration and starts a new coord
// loop, unless `up`/`down`/`login` took over meanwhile.
func (d *Daemon) reauthDone(ctx context.Context, n *wire.Node, user string) bool {
	d.upMu.Lock()
	defer d.upMu.Unlock()
	if ctx.Err() != nil {
		return false
	}
	d.stopLoop()
	d.mu.Lock()
	defer d.mu.Unlock()
	if ctx.Err() != nil || d.closed || d.st == nil {
		return false
	}
	next := *d.st
	if n.ID != 0 && len(n.Addresses) > 0 {
		next.NodeID, next.Name, next.Addresses = n.ID, n.Name, slices.Clone(n.Addresses)
	}
	if _, err := state.Store(d.cfg.StateDir, &next); err != nil {
		d.log.Error("re-authenticated, but cannot write state", "err", err)
		return false
	}
	d.st = &next
	d.reauth = reauthState{}
	d.log.Info("re-authenticated: rejoining the mesh", "user", user, "node", n.Name, "id", n.ID)
	if d.st.Prefs.WantRunning {
		d.startLoopLocked(nil)
	}
	return true
}
