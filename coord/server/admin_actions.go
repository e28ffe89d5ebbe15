package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Admin is coord's admin actions, each taking the Actor who asks. Every
// method that changes state appends an audit event, whatever its
// outcome; the read methods do not. The admin socket, the HTTPS admin
// API (API keys) and the web admin all call these, so an action is
// validated, applied and audited in one place. Errors map to an HTTP
// status and a message with ErrorStatus.
type Admin struct{ s *Server }

// Admin returns the server's admin actions.
func (s *Server) Admin() *Admin { return &Admin{s: s} }

// do runs one state change and audits it.
func (a *Admin) do(ctx context.Context, who Actor, action, target string, fn func() (detail string, err error)) error {
	detail, err := fn()
	if code, _ := ErrorStatus(err); err != nil && code >= 500 {
		a.s.log.Error("admin action failed", "action", action, "actor", who.String(), "target", target, "err", err)
	}
	a.s.Audit(ctx, who, action, target, detail, err)
	return err
}

// CreateUser makes a user.
func (a *Admin) CreateUser(ctx context.Context, who Actor, req adminapi.CreateUserRequest) (adminapi.User, error) {
	var out adminapi.User
	err := a.do(ctx, who, "user.create", req.Name, func() (string, error) {
		if err := store.CheckUserName(req.Name); err != nil {
			return "", badRequest("%s", err)
		}
		if req.Email != "" {
			if err := store.CheckEmail(req.Email); err != nil {
				return "", badRequest("%s", err)
			}
		}
		isAdmin, err := parseRole(req.Role)
		if err != nil {
			return "", badRequest("%s", err)
		}
		u, err := a.s.st.CreateUser(ctx, store.User{Name: req.Name, Email: req.Email, Admin: isAdmin, Created: a.s.cfg.Now()})
		if err != nil {
			return "", err
		}
		// A new user may make a stored policy's user names resolve.
		a.s.hub.Changed()
		a.s.log.Info("user created", "user", u.Name, "by", who.String())
		out = apiUser(u, 0)
		return "role " + out.Role, nil
	})
	return out, err
}

// DeleteUser removes a user with their keys and nodes in one store
// transaction and one netmap change: every peer loses all of the user's
// nodes in the same delta, and their streams close (S15). The built-in
// user "admin" may go too: administering needs no user.
func (a *Admin) DeleteUser(ctx context.Context, who Actor, name string) (adminapi.DeletedUser, error) {
	var out adminapi.DeletedUser
	err := a.do(ctx, who, "user.delete", name, func() (string, error) {
		ids, err := a.s.st.DeleteUser(ctx, name)
		if err != nil {
			return "", err
		}
		a.s.hub.Changed()
		a.s.log.Info("user deleted", "user", name, "nodes", ids, "by", who.String())
		if ids == nil {
			ids = []int64{}
		}
		out = adminapi.DeletedUser{Name: name, Nodes: ids}
		return fmt.Sprintf("%d nodes deleted", len(ids)), nil
	})
	return out, err
}

// SetUserDisabled disables or enables a user. Disabling takes all of the
// user's nodes out of every netmap and off every relay in one change,
// like a delete, but keeps them stored so enable brings them back with
// the same names and addresses.
func (a *Admin) SetUserDisabled(ctx context.Context, who Actor, name string, disabled bool) (adminapi.User, error) {
	var out adminapi.User
	action := "user.enable"
	if disabled {
		action = "user.disable"
	}
	err := a.do(ctx, who, action, name, func() (string, error) {
		u, err := a.s.st.SetUserDisabled(ctx, name, disabled)
		if err != nil {
			return "", err
		}
		a.s.hub.Changed()
		n, err := a.s.userNodes(ctx, u.Name)
		if err != nil {
			return "", err
		}
		a.s.log.Info("user access changed", "user", u.Name, "disabled", u.Disabled, "nodes", n, "by", who.String())
		out = apiUser(u, n)
		return fmt.Sprintf("%d nodes", n), nil
	})
	return out, err
}

// RenameUser renames a user with their nodes and keys. A user without an
// email is "name@" in policies, so rules naming the old login stop
// matching; the CLI says so.
func (a *Admin) RenameUser(ctx context.Context, who Actor, old, name string) (adminapi.User, error) {
	var out adminapi.User
	err := a.do(ctx, who, "user.rename", old, func() (string, error) {
		if err := store.CheckUserName(name); err != nil {
			return "", badRequest("%s", err)
		}
		u, err := a.s.st.RenameUser(ctx, old, name)
		if err != nil {
			return "", err
		}
		a.s.hub.Changed() // peers see the new user name; policies recompile
		n, err := a.s.userNodes(ctx, u.Name)
		if err != nil {
			return "", err
		}
		a.s.log.Info("user renamed", "from", old, "to", u.Name, "by", who.String())
		out = apiUser(u, n)
		out.OldName = old
		return "to " + u.Name, nil
	})
	return out, err
}

// SetUserRole gives a user the admin role or takes it away (role
// adminapi.RoleAdmin or RoleMember); a web admin session of theirs loses
// access at its next request.
func (a *Admin) SetUserRole(ctx context.Context, who Actor, name, role string) (adminapi.User, error) {
	var out adminapi.User
	err := a.do(ctx, who, "user.role", name, func() (string, error) {
		isAdmin, err := parseRole(role)
		if err != nil || role == "" {
			return "", badRequest("role %q: want %q or %q", role, adminapi.RoleAdmin, adminapi.RoleMember)
		}
		u, err := a.s.st.SetUserAdmin(ctx, name, isAdmin)
		if err != nil {
			return "", err
		}
		a.s.hub.Changed() // policies may name autogroup:admin
		n, err := a.s.userNodes(ctx, u.Name)
		if err != nil {
			return "", err
		}
		a.s.log.Info("user role changed", "user", u.Name, "admin", u.Admin, "by", who.String())
		out = apiUser(u, n)
		return "role " + role, nil
	})
	return out, err
}

// CreateKey makes a pre-auth key; the answer's Key is the only copy of
// its secret (coord keeps a hash).
func (a *Admin) CreateKey(ctx context.Context, who Actor, req adminapi.CreateKeyRequest) (adminapi.Key, error) {
	var out adminapi.Key
	var idb [6]byte
	rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	err := a.do(ctx, who, "preauthkey.create", id, func() (string, error) {
		exp, err := time.ParseDuration(req.Expiry)
		if err != nil || exp <= 0 || exp > maxKeyExpiry {
			return "", badRequest("expiry %q: want a positive duration up to %v, e.g. 1h or 720h", req.Expiry, maxKeyExpiry)
		}
		for _, t := range req.Tags {
			if !tagRE.MatchString(t) {
				return "", badRequest("tag %q: want tag:name (lower-case letters, digits, hyphens)", t)
			}
		}
		var sec [24]byte
		rand.Read(sec[:])
		ak := wire.AuthKey{ID: id, Secret: base64.RawURLEncoding.EncodeToString(sec[:]), Fingerprint: a.s.fp}
		sum := sha256.Sum256([]byte(ak.Secret))
		now := a.s.cfg.Now()
		if req.User == "" {
			req.User = store.DefaultUser
		}
		// Tags must be the key user's to give (the policy's tagOwners).
		if err := a.s.checkTagOwners(ctx, req.Tags, req.User); err != nil {
			var te errTagOwner
			if errors.As(err, &te) {
				a.s.log.Info("auth key refused", "user", req.User, "tags", req.Tags, "reason", err)
				return "", &AdminError{Code: http.StatusForbidden, Msg: "create auth key: " + err.Error()}
			}
			return "", err
		}
		k := store.PreAuthKey{ID: ak.ID, Hash: sum[:], Reusable: req.Reusable, Tags: req.Tags, User: req.User, Expiry: now.Add(exp), Created: now, Ephemeral: req.Ephemeral}
		if err := a.s.st.CreatePreAuthKey(ctx, k); err != nil {
			return "", err // unknown or disabled user: the error says what to do
		}
		a.s.log.Info("auth key created", "auth_key", ak.Redacted(), "user", k.User, "reusable", k.Reusable, "ephemeral", k.Ephemeral, "tags", k.Tags, "expiry", k.Expiry, "by", who.String())
		out = adminapi.Key{ID: k.ID, Key: ak.String(), Reusable: k.Reusable, Tags: k.Tags, User: k.User, Expiry: k.Expiry, Created: k.Created, Ephemeral: k.Ephemeral}
		return fmt.Sprintf("user %s, reusable %v, ephemeral %v, tags %v, expires %s", k.User, k.Reusable, k.Ephemeral, k.Tags, k.Expiry.UTC().Format(time.RFC3339)), nil
	})
	return out, err
}

// RevokeKey makes a pre-auth key fail every later registration at once;
// the check is in the registration's own transaction
// (store.consumeKey). Nodes that already joined with it are not touched.
func (a *Admin) RevokeKey(ctx context.Context, who Actor, id string) (adminapi.Key, error) {
	var out adminapi.Key
	err := a.do(ctx, who, "preauthkey.revoke", id, func() (string, error) {
		k, err := a.s.st.RevokePreAuthKey(ctx, id, a.s.cfg.Now())
		if err != nil {
			return "", err
		}
		a.s.log.Info("auth key revoked", "auth_key_id", k.ID, "user", k.User, "by", who.String())
		out = apiKey(k)
		return "", nil
	})
	return out, err
}

// DeleteKey removes a pre-auth key.
func (a *Admin) DeleteKey(ctx context.Context, who Actor, id string) error {
	return a.do(ctx, who, "preauthkey.delete", id, func() (string, error) {
		if err := a.s.st.DeletePreAuthKey(ctx, id); err != nil {
			return "", err
		}
		a.s.log.Info("auth key deleted", "auth_key_id", id, "by", who.String())
		return "", nil
	})
}

// DeleteNode removes a node (ID or name). Every stream re-reads the mesh
// at once: peers get PeersRemoved and the node's own stream closes (S15).
func (a *Admin) DeleteNode(ctx context.Context, who Actor, ref string) (adminapi.DeletedNode, error) {
	var out adminapi.DeletedNode
	err := a.do(ctx, who, "node.delete", ref, func() (string, error) {
		n, err := a.s.findNode(ctx, ref)
		if err != nil {
			return "", err
		}
		if err := a.s.st.DeleteNode(ctx, n.ID); err != nil {
			return "", err
		}
		a.s.hub.Changed()
		a.s.log.Info("node deleted", "node", n.Name, "id", n.ID, "by", who.String())
		out = adminapi.DeletedNode{ID: n.ID, Name: n.Name}
		return fmt.Sprintf("node %s (id %d, user %s)", n.Name, n.ID, n.User), nil
	})
	return out, err
}

// RenameNode gives a node (ID or name) a new name.
func (a *Admin) RenameNode(ctx context.Context, who Actor, ref, name string) (adminapi.RenamedNode, error) {
	var out adminapi.RenamedNode
	err := a.do(ctx, who, "node.rename", ref, func() (string, error) {
		n, err := a.s.findNode(ctx, ref)
		if err != nil {
			return "", err
		}
		if store.DNSLabel(name) != name {
			return "", badRequest("name %s: want a DNS label (lower-case letters, digits, inner hyphens, at most 59 characters)", quote(name))
		}
		old := n.Name
		n, err = a.s.st.RenameNode(ctx, n.ID, name)
		if err != nil {
			return "", err
		}
		a.s.hub.Changed() // peers get PeersChanged, the node a new Self
		a.s.log.Info("node renamed", "id", n.ID, "from", old, "to", n.Name, "by", who.String())
		out = adminapi.RenamedNode{ID: n.ID, Name: n.Name, OldName: old}
		return old + " to " + n.Name, nil
	})
	return out, err
}

// ExpireNode expires a node's key now: peers drop it and its stream
// closes as for a key that expired on its own; the node must register
// again (S12).
func (a *Admin) ExpireNode(ctx context.Context, who Actor, ref string) (adminapi.Node, error) {
	var out adminapi.Node
	err := a.do(ctx, who, "node.expire", ref, func() (string, error) {
		n, err := a.s.findNode(ctx, ref)
		if err != nil {
			return "", err
		}
		n, err = a.s.st.ExpireNode(ctx, n.ID, a.s.cfg.Now())
		if err != nil {
			return "", err
		}
		a.s.hub.Changed()
		a.s.log.Info("node key expired by admin", "node", n.Name, "id", n.ID, "by", who.String())
		out = a.s.apiNode(n, false, a.s.expiryOffOrFalse(ctx, n.ID))
		return "node " + n.Name, nil
	})
	return out, err
}

// ApproveRoutes approves advertised routes of a node.
func (a *Admin) ApproveRoutes(ctx context.Context, who Actor, req adminapi.ApproveRequest) (adminapi.ApprovedRoutes, error) {
	var out adminapi.ApprovedRoutes
	err := a.do(ctx, who, "routes.approve", req.Node, func() (string, error) {
		var routes []netip.Prefix
		for _, c := range req.Routes {
			p, err := netip.ParsePrefix(strings.TrimSpace(c))
			if err != nil {
				return "", badRequest("route %q: not a CIDR prefix like 192.168.1.0/24", c)
			}
			if err := checkRoute(p); err != nil {
				return "", badRequest("route %s", err)
			}
			routes = append(routes, p)
		}
		if len(routes) == 0 {
			return "", badRequest("no routes given")
		}
		n, err := a.s.findNode(ctx, req.Node)
		if err != nil {
			return "", err
		}
		n, err = a.s.st.ApproveRoutes(ctx, n.ID, routes)
		if err != nil {
			return "", err
		}
		a.s.hub.Changed()
		a.s.log.Info("routes approved", "node", n.Name, "routes", routes, "by", who.String())
		out = adminapi.ApprovedRoutes{Node: n.Name, ApprovedRoutes: n.ApprovedRoutes}
		return fmt.Sprint(routes), nil
	})
	return out, err
}

// SetPolicy stores a policy only if it parses, compiles and passes its
// own tests: a broken policy never reaches nodes.
func (a *Admin) SetPolicy(ctx context.Context, who Actor, req adminapi.PolicyRequest) (adminapi.PolicyResult, error) {
	var out adminapi.PolicyResult
	err := a.do(ctx, who, "policy.set", req.Name, func() (string, error) {
		a.s.policyMu.Lock()
		defer a.s.policyMu.Unlock()
		_, res, bad, err := a.s.checkPolicy(ctx, req)
		switch {
		case err != nil:
			return "", err
		case bad != nil:
			a.s.log.Info("policy refused", "name", req.Name, "by", who.String())
			return "", badRequest("%s", bad)
		}
		v, err := a.s.st.SetPolicy(ctx, req.Body, a.s.cfg.Now())
		if err != nil {
			return "", err
		}
		a.s.hub.Changed()
		res.Version = v.Version
		a.s.log.Info("policy set", "version", v.Version, "tests", res.Tests, "by", who.String())
		out = res
		return fmt.Sprintf("version %d, %d tests passed", v.Version, res.Tests), nil
	})
	return out, err
}

// CheckPolicy parses a policy and runs its tests against the live nodes
// without storing it; a refused policy is an *AdminError listing every
// problem. Not audited: it changes nothing.
func (a *Admin) CheckPolicy(ctx context.Context, req adminapi.PolicyRequest) (adminapi.PolicyResult, error) {
	_, res, bad, err := a.s.checkPolicy(ctx, req)
	if err != nil {
		return res, err
	}
	if bad != nil {
		return res, badRequest("%s", bad)
	}
	return res, nil
}

// handle adapts an Admin action to an HTTP handler of the admin API: the
// actor comes from the request's context (the socket's or the API
// key's), the body (if any) is decoded into In.
func handle[In, Out any](s *Server, fn func(ctx context.Context, who Actor, r *http.Request, in In) (Out, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in In
		if _, none := any(in).(struct{}); !none && !readAdmin(w, r, &in) {
			return
		}
		who, ok := ActorFrom(r.Context())
		if !ok {
			who = Actor{Kind: ActorSocket, Source: "unix socket"}
		}
		out, err := fn(r.Context(), who, r, in)
		if err != nil {
			code, msg := ErrorStatus(err)
			writeErr(w, code, msg)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}
