package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
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

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func cli(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"--state-dir", dir}, args...), &out, &errb)
	return out.String() + errb.String(), code
}

// TestCLI drives the real serve command and the admin commands against
// it, with a real node joining through controlclient.
func TestCLI(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"--state-dir", dir, "serve", "--listen", addr, "--server-url", "https://" + addr}, os.Stdout, os.Stderr)
	}()
	t.Cleanup(func() { cancel(); <-done })
	sock := filepath.Join(dir, "admin.sock")
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 100 {
			t.Fatal("admin socket never appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if fi, _ := os.Stat(sock); fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode %v", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Join(dir, "tls.key")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("tls key mode %v", fi.Mode())
	}

	out, code := cli(t, dir, "keys", "create", "--tag", "tag:router")
	if code != 0 {
		t.Fatalf("keys create: %d %s", code, out)
	}
	ak, err := wire.ParseAuthKey(out)
	if err != nil || ak.Fingerprint == "" {
		t.Fatalf("keys create printed %q: %v", out, err)
	}
	fp, _ := cli(t, dir, "fingerprint")
	if strings.TrimSpace(fp) != ak.Fingerprint {
		t.Fatalf("fingerprint %q, key pins %q", fp, ak.Fingerprint)
	}

	c, err := controlclient.New(controlclient.Options{ServerURL: "https://" + addr, Fingerprint: ak.Fingerprint, MachineKey: key.NewMachine()})
	if err != nil {
		t.Fatal(err)
	}
	nk := key.NewNode().Public()
	if _, err := c.Register(ctx, wire.RegisterRequest{AuthKey: ak.WithoutFingerprint(), NodeKey: nk, Hostname: "gw"}); err != nil {
		t.Fatal(err)
	}
	// Open a stream advertising a route, then approve it from the CLI.
	mctx, mcancel := context.WithCancel(ctx)
	got := make(chan *wire.MapMessage, 10)
	go c.Map(mctx, wire.MapRequest{NodeKey: nk, AdvertiseRoutes: []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24"), netip.MustParsePrefix("198.19.9.0/24")}}, func(m *wire.MapMessage) error { got <- m; return nil })
	defer mcancel()
	<-got

	out, code = cli(t, dir, "keys", "list")
	if code != 0 || !strings.Contains(out, ak.ID) || strings.Contains(out, ak.Secret) {
		t.Fatalf("keys list: %s", out)
	}
	out, code = cli(t, dir, "nodes", "list", "--json")
	var nodes []adminapi.Node
	if code != 0 || json.Unmarshal([]byte(out), &nodes) != nil || len(nodes) != 1 || nodes[0].Name != "gw" || !nodes[0].Online {
		t.Fatalf("nodes list --json: %s", out)
	}
	out, code = cli(t, dir, "routes", "approve", "gw", "198.19.1.0/24")
	if code != 0 {
		t.Fatalf("routes approve: %s", out)
	}
	out, _ = cli(t, dir, "routes", "list")
	if !strings.Contains(out, "198.19.1.0/24") || !strings.Contains(out, "true") {
		t.Fatalf("routes list: %s", out)
	}
	if out, code = cli(t, dir, "routes", "approve", "gw", "not-a-cidr"); code == 0 || !strings.Contains(out, "not a CIDR") {
		t.Fatalf("bad CIDR accepted: %d %s", code, out)
	}
	// Users, keys for a user, rename, policy versions.
	if out, code = cli(t, dir, "users", "create", "alice", "--email", "alice@home.example"); code != 0 || !strings.Contains(out, "alice@home.example") {
		t.Fatalf("users create: %d %s", code, out)
	}
	if out, code = cli(t, dir, "keys", "create", "--user", "nobody"); code != 1 || !strings.Contains(out, "nobody") {
		t.Fatalf("key for unknown user: %d %s", code, out)
	}
	if out, code = cli(t, dir, "keys", "create", "--user", "alice"); code != 0 {
		t.Fatalf("keys create --user: %d %s", code, out)
	}
	if out, _ = cli(t, dir, "users", "list"); !strings.Contains(out, "alice@home.example") || !strings.Contains(out, "admin@") {
		t.Fatalf("users list: %s", out)
	}
	if out, code = cli(t, dir, "nodes", "rename", "gw", "gateway"); code != 0 || !strings.Contains(out, "gw -> gateway") {
		t.Fatalf("nodes rename: %d %s", code, out)
	}
	for i := 0; ; i++ {
		m := <-got
		if m.Self != nil && m.Self.Name == "gateway" {
			break
		}
		if i > 20 {
			t.Fatal("rename never reached the node")
		}
	}
	if out, _ = cli(t, dir, "policy", "get"); !strings.Contains(out, "default") {
		t.Fatalf("policy get without policy: %s", out)
	}
	bad := filepath.Join(dir, "bad.hujson")
	os.WriteFile(bad, []byte("{\n  \"acls\": [{\"action\": \"accept\", \"src\": [\"nobody@x\"], \"dst\": [\"tag:nope:*\"]}]\n}"), 0o600)
	if out, code = cli(t, dir, "policy", "set", bad); code != 1 || !strings.Contains(out, "bad.hujson:2:") {
		t.Fatalf("bad policy: %d %s", code, out)
	}
	good := filepath.Join(dir, "good.hujson")
	os.WriteFile(good, []byte(`{"acls": [{"action": "accept", "src": ["alice@home.example"], "dst": ["admin@:*"]}],
		"tagOwners": {"tag:router": ["admin@"]}, "autoApprovers": {"routes": {"198.19.8.0/23": ["tag:router"]}},
		"tests": [{"src": "alice@home.example", "accept": ["admin@:22"]}]}`), 0o600)
	if out, code = cli(t, dir, "policy", "check", good); code != 0 || !strings.Contains(out, "1 tests passed") {
		t.Fatalf("policy check: %d %s", code, out)
	}
	if out, code = cli(t, dir, "policy", "set", good); code != 0 || !strings.Contains(out, "version 1") {
		t.Fatalf("policy set: %d %s", code, out)
	}
	for i := 0; ; i++ {
		if m := <-got; m.PacketFilter != nil {
			break
		}
		if i > 20 {
			t.Fatal("policy never reached the node")
		}
	}
	// 198.19.9.0/24 lies in the auto-approved 198.19.8.0/23.
	out, _ = cli(t, dir, "routes", "list", "--json")
	var routes []adminapi.Route
	if err := json.Unmarshal([]byte(out), &routes); err != nil || len(routes) != 2 {
		t.Fatalf("routes list --json: %v %s", err, out)
	}
	for _, r := range routes {
		want := adminapi.Route{NodeID: r.NodeID, Node: "gateway", Prefix: r.Prefix, Approved: true, AutoApproved: r.Prefix.String() == "198.19.9.0/24"}
		if r != want {
			t.Fatalf("route %+v, want %+v", r, want)
		}
	}
	if out, _ = cli(t, dir, "routes", "list"); !strings.Contains(out, "198.19.9.0/24  true (autoApprovers)") {
		t.Fatalf("routes list: %s", out)
	}
	if out, _ = cli(t, dir, "policy", "get"); !strings.Contains(out, "alice@home.example") {
		t.Fatalf("policy get: %s", out)
	}
	if out, _ = cli(t, dir, "policy", "history", "--json"); !strings.Contains(out, `"version": 1`) {
		t.Fatalf("policy history: %s", out)
	}
	if out, code = cli(t, dir, "users", "delete", "alice"); code != 0 || !strings.Contains(out, "0 node(s)") {
		t.Fatalf("users delete: %d %s", code, out)
	}

	if out, code = cli(t, dir, "nodes", "delete", "gateway"); code != 0 {
		t.Fatalf("nodes delete: %s", out)
	}
	if out, code = cli(t, dir, "nodes", "delete", "gateway"); code != 1 || !strings.Contains(out, "not found") {
		t.Fatalf("delete twice: %d %s", code, out)
	}
	if out, code = cli(t, dir, "bogus"); code != 2 {
		t.Fatalf("unknown command: %d %s", code, out)
	}
	if out, code = cli(t, dir, "nodes", "delete", "--help"); code != 0 || !strings.Contains(out, "Examples:") {
		t.Fatalf("help: %d %s", code, out)
	}
}
