package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// serveForAdmin runs the real serve command in dir and waits for its socket.
func serveForAdmin(t *testing.T, dir string) string {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"--state-dir", dir, "serve", "--listen", addr, "--server-url", "https://" + addr, "--derp=false"}, os.Stdout, os.Stderr)
	}()
	t.Cleanup(func() { cancel(); <-done })
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, "admin.sock")); err == nil {
			return addr
		}
		if i > 100 {
			t.Fatal("admin socket never appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testNode is a node joined through the real control protocol.
type testNode struct {
	c  *controlclient.Client
	nk key.NodePublic
}

func join(t *testing.T, addr, authKey, host string) (*testNode, error) {
	t.Helper()
	ak, err := wire.ParseAuthKey(authKey)
	if err != nil {
		t.Fatalf("auth key %q: %v", authKey, err)
	}
	c, err := controlclient.New(controlclient.Options{ServerURL: "https://" + addr, Fingerprint: ak.Fingerprint, MachineKey: key.NewMachine()})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{c: c, nk: key.NewNode().Public()}
	_, err = c.Register(context.Background(), wire.RegisterRequest{AuthKey: ak.WithoutFingerprint(), NodeKey: n.nk, Hostname: host})
	return n, err
}

// peerWatch follows a node's netmap stream and keeps its peer names.
type peerWatch struct {
	msgs chan *wire.MapMessage
	err  chan error
}

func watchPeers(t *testing.T, n *testNode) *peerWatch {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w := &peerWatch{msgs: make(chan *wire.MapMessage, 64), err: make(chan error, 1)}
	go func() {
		w.err <- n.c.Map(ctx, wire.MapRequest{NodeKey: n.nk}, func(m *wire.MapMessage) error { w.msgs <- m; return nil })
	}()
	return w
}

// waitPeer waits until the stream shows peer id present (or absent).
func (w *peerWatch) waitPeer(t *testing.T, id wire.NodeID, present bool, peers map[wire.NodeID]bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for peers[id] != present {
		select {
		case m := <-w.msgs:
			if m.Full {
				clear(peers)
				for _, p := range m.Peers {
					peers[p.ID] = true
				}
			}
			for _, p := range m.PeersChanged {
				peers[p.ID] = true
			}
			for _, p := range m.PeersRemoved {
				delete(peers, p)
			}
		case err := <-w.err:
			t.Fatalf("netmap stream ended: %v", err)
		case <-deadline:
			t.Fatalf("peer %d present=%v: not seen within 5 s", id, present)
		}
	}
}

func cliJSON(t *testing.T, dir string, v any, args ...string) {
	t.Helper()
	out, code := cli(t, dir, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), code, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s --json: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestCLIRevocation drives keys revoke/delete, users disable/enable/
// rename/delete (admin too) and nodes expire against the real serve
// command, with nodes joined through the control protocol, and checks
// what a peer's netmap and a registration see (S15, S20, S7).
func TestCLIRevocation(t *testing.T) {
	dir := t.TempDir()
	addr := serveForAdmin(t, dir)
	if out, code := cli(t, dir, "users", "create", "bob"); code != 0 {
		t.Fatalf("users create: %s", out)
	}
	pol := filepath.Join(dir, "all.hujson")
	os.WriteFile(pol, []byte(`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`), 0o600)
	if out, code := cli(t, dir, "policy", "set", pol); code != 0 {
		t.Fatalf("policy set: %s", out)
	}
	var bobKey, obsKey adminapi.Key
	cliJSON(t, dir, &bobKey, "keys", "create", "--reusable", "--user", "bob")
	cliJSON(t, dir, &obsKey, "keys", "create")
	bob, err := join(t, addr, bobKey.Key, "bob1")
	if err != nil {
		t.Fatal(err)
	}
	obs, err := join(t, addr, obsKey.Key, "obs")
	if err != nil {
		t.Fatal(err)
	}
	var nodes []adminapi.Node
	cliJSON(t, dir, &nodes, "nodes", "list")
	var bobID wire.NodeID
	for _, n := range nodes {
		if n.Name == "bob1" {
			bobID = wire.NodeID(n.ID)
		}
	}
	w := watchPeers(t, obs)
	peers := map[wire.NodeID]bool{}
	w.waitPeer(t, bobID, true, peers)

	// keys revoke: the reusable key fails for new registrations at once;
	// bob1, joined with it, keeps working.
	var rk adminapi.Key
	cliJSON(t, dir, &rk, "keys", "revoke", bobKey.ID)
	if rk.ID != bobKey.ID || rk.Revoked.IsZero() {
		t.Fatalf("keys revoke --json: %+v", rk)
	}
	if _, err := join(t, addr, bobKey.Key, "bob2"); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("registration with a revoked key: %v, want refused as revoked", err)
	}
	if _, err := bob.c.Register(context.Background(), wire.RegisterRequest{NodeKey: bob.nk, Hostname: "bob1"}); err != nil {
		t.Fatalf("bob1 re-register without a key after its key was revoked: %v", err)
	}
	if out, _ := cli(t, dir, "keys", "list"); !strings.Contains(out, "revoked") {
		t.Fatalf("keys list does not show the revoke: %s", out)
	}

	// users disable: bob's node leaves the observer's netmap; bob can
	// neither stream nor get a key; enable brings the node back.
	var u adminapi.User
	cliJSON(t, dir, &u, "users", "disable", "bob")
	if !u.Disabled || u.Nodes != 1 {
		t.Fatalf("users disable --json: %+v", u)
	}
	w.waitPeer(t, bobID, false, peers)
	err = bob.c.Map(context.Background(), wire.MapRequest{NodeKey: bob.nk}, func(*wire.MapMessage) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("map stream of a disabled user's node: %v", err)
	}
	if out, code := cli(t, dir, "keys", "create", "--user", "bob"); code == 0 || !strings.Contains(out, "disabled") {
		t.Fatalf("key for a disabled user: %d %s", code, out)
	}
	if out, _ := cli(t, dir, "users", "list"); !strings.Contains(out, "disabled") {
		t.Fatalf("users list: %s", out)
	}
	cliJSON(t, dir, &u, "users", "enable", "bob")
	if u.Disabled {
		t.Fatalf("users enable --json: %+v", u)
	}
	w.waitPeer(t, bobID, true, peers)

	// users rename moves the node with the user.
	cliJSON(t, dir, &u, "users", "rename", "bob", "robert")
	if u.Name != "robert" || u.OldName != "bob" || u.Nodes != 1 || u.Login != "robert@" {
		t.Fatalf("users rename --json: %+v", u)
	}
	if out, code := cli(t, dir, "users", "rename", "robert", "admin"); code != 1 || !strings.Contains(out, "exists") {
		t.Fatalf("rename onto an existing user: %d %s", code, out)
	}

	// nodes expire: peers drop it, and it must re-auth with a key.
	var n adminapi.Node
	cliJSON(t, dir, &n, "nodes", "expire", "bob1")
	if !n.Expired || n.User != "robert" {
		t.Fatalf("nodes expire --json: %+v", n)
	}
	w.waitPeer(t, bobID, false, peers)
	if _, err := bob.c.Register(context.Background(), wire.RegisterRequest{NodeKey: bob.nk, Hostname: "bob1"}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired node re-registering without a key: %v", err)
	}

	// keys delete.
	var dk adminapi.DeletedKey
	cliJSON(t, dir, &dk, "keys", "delete", bobKey.ID)
	if dk.ID != bobKey.ID {
		t.Fatalf("keys delete --json: %+v", dk)
	}
	if out, code := cli(t, dir, "keys", "delete", bobKey.ID); code != 1 || !strings.Contains(out, "not found") {
		t.Fatalf("keys delete twice: %d %s", code, out)
	}

	// The built-in admin may be deleted; keys without --user then say
	// how to get it back, and the admin socket keeps working.
	var du adminapi.DeletedUser
	cliJSON(t, dir, &du, "users", "delete", "admin")
	if du.Name != "admin" || len(du.Nodes) != 1 {
		t.Fatalf("users delete admin --json: %+v", du)
	}
	if out, code := cli(t, dir, "keys", "create"); code != 1 || !strings.Contains(out, "users create admin") {
		t.Fatalf("keys create after admin was deleted: %d %s", code, out)
	}
	if out, code := cli(t, dir, "users", "create", "admin"); code != 0 {
		t.Fatalf("users create admin again: %s", out)
	}
	if out, code := cli(t, dir, "keys", "create"); code != 0 {
		t.Fatalf("keys create with admin back: %s", out)
	}

	for _, c := range [][]string{{"keys", "revoke"}, {"keys", "delete"}, {"users", "disable"}, {"users", "enable"}, {"users", "rename"}, {"nodes", "expire"}} {
		if out, code := cli(t, dir, append(c, "--help")...); code != 0 || !strings.Contains(out, "Examples:") {
			t.Errorf("%s --help: %d %s", strings.Join(c, " "), code, out)
		}
		if out, code := cli(t, dir, c...); code != 2 {
			t.Errorf("%s without arguments: exit %d, want 2: %s", strings.Join(c, " "), code, out)
		}
		if out, code := cli(t, dir, append(c, "nosuch", "x")[:len(c)+1+btoi(c[1] == "rename")]...); code != 1 || !strings.Contains(out, "not found") {
			t.Errorf("%s nosuch: exit %d: %s", strings.Join(c, " "), code, out)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
