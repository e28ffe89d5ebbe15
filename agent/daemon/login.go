package daemon

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"slices"
	"sync"

	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// loginControl is the part of the control client interactive login needs;
// controlclient.Client has it, test doubles may not.
type loginControl interface {
	Login(ctx context.Context, req wire.LoginRequest) (wire.LoginResponse, error)
	LoginWait(ctx context.Context, id string) (wire.LoginWaitResponse, error)
	Logout(ctx context.Context) error
}

var (
	_ loginControl          = (*controlclient.Client)(nil)
	_ localapi.LoginBackend = (*Daemon)(nil)

	loginMu             sync.Mutex // one login start at a time
	errLoginUnsupported = &localapi.Error{Code: http.StatusNotImplemented, Msg: "this agent's control client cannot log in interactively"}
	errNoServer         = localapi.BadRequest("--login-server is required to log in")
)

// loginClient builds a control client for the stored (or given) coord.
func (d *Daemon) loginClient(server, fp string) (loginControl, *state.State, error) {
	d.mu.Lock()
	var st state.State
	if d.st != nil {
		st = *d.st
	} else {
		st = *state.New()
	}
	d.mu.Unlock()
	if server == "" {
		server = st.LoginServer
	}
	if fp == "" && server == st.LoginServer {
		fp = st.CoordFingerprint
	}
	if server == "" {
		return nil, nil, errNoServer
	}
	if fp != "" {
		if _, err := wire.ParseFingerprint(fp); err != nil {
			return nil, nil, localapi.BadRequest("%v", err)
		}
	}
	if server != st.LoginServer {
		st.NodeID, st.Name, st.Addresses = 0, "", nil
	}
	st.LoginServer, st.CoordFingerprint = server, fp
	if err := d.commit(&st); err != nil { // the machine key must outlive this call
		return nil, nil, err
	}
	c, err := d.newControl(controlclient.Options{ServerURL: server, Fingerprint: fp, MachineKey: st.MachineKey, Logger: d.log.With("part", "login")})
	if err != nil {
		return nil, nil, localapi.BadRequest("%v", err)
	}
	lc, ok := c.(loginControl)
	if !ok {
		return nil, nil, errLoginUnsupported
	}
	return lc, &st, nil
}

// Login implements localapi.LoginBackend: it asks coord for a login URL.
func (d *Daemon) Login(ctx context.Context, req localapi.LoginRequest) (localapi.LoginResponse, error) {
	loginMu.Lock()
	defer loginMu.Unlock()
	d.mu.Lock()
	d.cancelReauthLocked() // this login replaces a background re-auth's
	d.mu.Unlock()
	lc, st, err := d.loginClient(req.LoginServer, req.CoordFingerprint)
	if err != nil {
		return localapi.LoginResponse{}, err
	}
	prefs := st.Prefs
	if req.Hostname != "" {
		prefs.Hostname = req.Hostname
	}
	nk := st.NodeKey
	if req.ForceReauth && st.Joined() {
		nk = key.NewNode() // stored only once the login is done (LoginWait)
	}
	lr, err := lc.Login(ctx, wire.LoginRequest{NodeKey: nk.Public(), Hostname: d.hostname(prefs), OS: runtime.GOOS, Provider: req.Provider})
	if err != nil {
		return localapi.LoginResponse{}, userError(err)
	}
	d.mu.Lock()
	d.pending = pendingKey{}
	if !nk.Equal(st.NodeKey) {
		d.pending = pendingKey{loginID: lr.ID, key: nk}
	}
	d.mu.Unlock()
	d.log.Info("login started", "server", st.LoginServer, "provider", lr.Provider)
	return localapi.LoginResponse{ID: lr.ID, URL: lr.URL, Provider: lr.Provider, ExpiresAt: lr.ExpiresAt}, nil
}

// LoginWait implements localapi.LoginBackend: one long poll at coord. When
// the login is done the node's registration is stored; `up` then brings
// it up without an auth key.
func (d *Daemon) LoginWait(ctx context.Context, req localapi.LoginWaitRequest) (localapi.LoginWaitResponse, error) {
	lc, _, err := d.loginClient("", "")
	if err != nil {
		return localapi.LoginWaitResponse{}, err
	}
	r, err := lc.LoginWait(ctx, req.ID)
	if err != nil {
		return localapi.LoginWaitResponse{}, userError(err)
	}
	switch {
	case !r.Done:
		return localapi.LoginWaitResponse{}, nil
	case r.Error != "" || r.Node == nil:
		return localapi.LoginWaitResponse{Done: true, Error: r.Error}, nil
	}
	n := r.Node
	if n.ID == 0 || len(n.Addresses) == 0 {
		return localapi.LoginWaitResponse{}, &localapi.Error{Code: http.StatusBadGateway, Msg: "coord answered the login without a node ID or addresses"}
	}
	d.mu.Lock()
	next := *d.st
	next.NodeID, next.Name, next.Addresses = n.ID, n.Name, slices.Clone(n.Addresses)
	rotated := d.pending.loginID == req.ID && !d.pending.key.IsZero()
	if rotated {
		next.NodeKey = d.pending.key // coord registered the new key
	}
	d.pending = pendingKey{}
	d.mu.Unlock()
	if err := d.commit(&next); err != nil {
		return localapi.LoginWaitResponse{}, err
	}
	if rotated {
		// The running stream speaks for the old key, which coord now
		// refuses: `up` starts a new loop with the new one.
		d.stopLoop()
		d.log.Info("node key rotated", "node", n.Name, "key", next.NodeKey.Public().ShortString())
	}
	d.log.Info("logged in", "user", r.User, "node", n.Name, "id", n.ID)
	return localapi.LoginWaitResponse{Done: true, User: r.User, Name: n.Name, Addresses: slices.Clone(n.Addresses)}, nil
}

// Logout implements localapi.LoginBackend: coord expires the node key,
// the node leaves the mesh, and it forgets its registration (the keys
// stay); the next `up` needs a login or an auth key.
func (d *Daemon) Logout(ctx context.Context) error {
	d.mu.Lock()
	d.cancelReauthLocked()
	d.mu.Unlock()
	lc, _, err := d.loginClient("", "")
	if err != nil {
		return err
	}
	if err := lc.Logout(ctx); err != nil {
		var se *controlclient.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusNotFound {
			return userError(err)
		}
	}
	if err := d.Down(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	next := *d.st
	next.NodeID, next.Name, next.Addresses = 0, "", nil
	d.mu.Unlock()
	return d.commit(&next)
}
