package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // coord's store, edited behind its back

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/testbed"
)

// rejectedPeers reads `rejected_peers` and `engine_error` from `lanmesh
// status --json` (docs/cli.md).
func rejectedPeers(t *testing.T, a *testbed.Agent) (rej []struct{ Name, NodeKey, Reason string }, engineErr string) {
	t.Helper()
	r, err := a.CLI(context.Background(), "status", "--json")
	if err != nil {
		t.Fatalf("%s: status --json: %v", a.Name, err)
	}
	var st struct {
		Rejected []struct {
			Name    string `json:"name"`
			NodeKey string `json:"node_key"`
			Reason  string `json:"reason"`
		} `json:"rejected_peers"`
		EngineError *string `json:"engine_error"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("%s: status --json: %v", a.Name, err)
	}
	if st.Rejected == nil || st.EngineError == nil {
		t.Fatalf("%s: status --json lacks rejected_peers or engine_error: %s", a.Name, r.Stdout)
	}
	for _, x := range st.Rejected {
		rej = append(rej, struct{ Name, NodeKey, Reason string }{x.Name, x.NodeKey, x.Reason})
	}
	return rej, *st.EngineError
}

// editState rewrites fields of an agent's state.json (the agent stopped).
func editState(t *testing.T, a *testbed.Agent, edit func(map[string]json.RawMessage)) {
	t.Helper()
	path := filepath.Join(a.StateDir, "state.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func stateField(t *testing.T, a *testbed.Agent, field string) json.RawMessage {
	t.Helper()
	var v json.RawMessage
	editState(t, a, func(m map[string]json.RawMessage) { v = m[field] })
	if len(v) == 0 {
		t.Fatalf("%s: state.json has no %s", a.Name, field)
	}
	return v
}

// TestDuplicateNodeKeyRefused (S19, coord's end): a new machine that
// registers with router-b's node key is refused with a 409 that `lanmesh
// up` and `status` show, the agent does not retry, and no peer ever sees
// a second node with router-b's key.
func TestDuplicateNodeKeyRefused(t *testing.T) {
	t.Parallel()
	m := mesh(t, testbed.StandardOptions{})
	ctx := context.Background()
	x, err := m.AddLaptop(ctx, "laptop-x", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	// laptop-x becomes a new machine holding router-b's node key.
	x.Stop()
	bKey := stateField(t, m.B, "node_key")
	mk, err := json.Marshal(key.NewMachine())
	if err != nil {
		t.Fatal(err)
	}
	editState(t, x, func(s map[string]json.RawMessage) {
		s["node_key"], s["machine_key"] = bKey, mk
		delete(s, "node_id")
		delete(s, "name")
		delete(s, "addresses")
	})
	if err := x.Start(ctx); err != nil {
		t.Fatal(err)
	}
	k, err := m.Coord.CreateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := x.Up(ctx, m.Coord, k, "--timeout", "10s")
	if err == nil {
		t.Fatalf("up with router-b's node key succeeded: %s", r.Stdout)
	}
	msg := r.Stderr + r.Stdout
	t.Logf("up with a taken node key: exit %d: %s", r.ExitCode, strings.TrimSpace(msg))
	if !strings.Contains(msg, "node key is already used by another node") {
		t.Errorf("up does not say the node key is taken: %q", msg)
	}
	st, err := x.WaitStatus(ctx, "the refusal in status", func(s *testbed.Status) bool {
		return strings.Contains(s.Coord.LastError, "already used")
	})
	if err != nil {
		t.Fatalf("%v (status %+v)", err, st)
	}
	if st.Coord.NextRetry != "" || st.BackendState == "Running" {
		t.Errorf("a refusal must be final: state %s, next_retry %q", st.BackendState, st.Coord.NextRetry)
	}
	// Coord kept one node per key: router-a sees router-b once, and
	// router-b's LAN still answers.
	sa, err := m.A.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, p := range sa.Peers {
		if other, dup := keys[p.Key]; dup {
			t.Errorf("router-a's netmap has %s and %s with one node key", other, p.Name)
		}
		keys[p.Key] = p.Name
	}
	if rej, _ := rejectedPeers(t, m.A); len(rej) != 0 {
		t.Errorf("router-a left out peers: %+v", rej)
	}
	waitPing(t, m.A1, testbed.B1IP, 10*time.Second)
}

// TestBadPeerInNetmap (S19, the agent's end): coord's database is edited
// so that netmaps carry a peer with router-b's node key and a peer whose
// approved route is 127.0.0.0/8. router-a applies every other peer and
// names both in `status --json`; a peer that joins later works, its
// deletion (revocation) still takes effect, and after a restart with coord
// down the cached netmap brings the good peers back.
func TestBadPeerInNetmap(t *testing.T) {
	t.Parallel()
	m := mesh(t, testbed.StandardOptions{})
	ctx := context.Background()
	waitPing(t, m.A1, testbed.B1IP, 10*time.Second)
	x, err := m.AddLaptop(ctx, "laptop-x", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddLaptop(ctx, "laptop-y", 2, nil); err != nil {
		t.Fatal(err)
	}
	secrets := secretsOf(t, m) // S11: the new log lines name peers, never keys' secrets
	x.Stop()                   // its node key is about to change under it

	db, err := sql.Open("sqlite", "file:"+filepath.Join(m.Coord.StateDir, "coord.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`DROP INDEX nodes_node_key`, // what an old coord lacked
		`UPDATE nodes SET node_key = (SELECT node_key FROM nodes WHERE name = 'router-b') WHERE name = 'laptop-x'`,
		`UPDATE nodes SET advertised_routes = '["127.0.0.0/8"]', approved_routes = '["127.0.0.0/8"]' WHERE name = 'laptop-y'`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// A rename makes coord re-read its store and push the netmaps.
	if _, err := m.Coord.Admin(ctx, "nodes", "rename", "laptop-x", "impostor"); err != nil {
		t.Fatal(err)
	}
	sb, err := m.B.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rej []struct{ Name, NodeKey, Reason string }
	deadline := time.Now().Add(10 * time.Second)
	for {
		var engineErr string
		rej, engineErr = rejectedPeers(t, m.A)
		if len(rej) == 2 {
			if engineErr != "" {
				t.Errorf("engine_error %q next to left-out peers", engineErr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("router-a left out %+v, want impostor and laptop-y", rej)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, r := range rej {
		t.Logf("router-a left out %s (%s): %s", r.Name, r.NodeKey, r.Reason)
	}
	// In node ID order: impostor (laptop-x) joined before laptop-y.
	if r := rej[0]; r.Name != "impostor" || r.NodeKey != sb.Self.Key || !strings.Contains(r.Reason, `already used by peer "router-b"`) {
		t.Errorf("first left-out peer %+v, want impostor with router-b's key %s", r, sb.Self.Key)
	}
	if r := rej[1]; r.Name != "laptop-y" || r.Reason != "allowed IP 127.0.0.0/8: covers host-scoped range 127.0.0.0/8" {
		t.Errorf("second left-out peer %+v, want laptop-y for 127.0.0.0/8", r)
	}
	if r, err := m.A.CLI(ctx, "status"); err != nil || !strings.Contains(r.Stdout, "left out: impostor") {
		t.Errorf("plain status does not name the left-out peer: %v\n%s", err, r.Stdout)
	}
	waitPing(t, m.A1, testbed.B1IP, 5*time.Second)

	// New peers keep flowing: laptop-z joins and router-a reaches it.
	z, err := m.AddLaptop(ctx, "laptop-z", 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	zip, err := z.MeshIP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := waitPing(t, m.A.Host, zip, 15*time.Second)
	t.Logf("router-a -> laptop-z (joined after the bad peers) after %s", fmtMs(first))

	// Revocation keeps working.
	start := time.Now()
	if _, err := m.Coord.Admin(ctx, "nodes", "delete", "laptop-z"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.A.WaitStatus(ctx, "laptop-z gone", peerIs("laptop-z", false)); err != nil {
		t.Fatal(err)
	}
	t.Logf("S15 with bad peers in the netmap: laptop-z gone from router-a %s after nodes delete", fmtMs(time.Since(start)))
	if n, _ := m.A.Host.Ping(ctx, zip, 2, 500*time.Millisecond); n != 0 {
		t.Errorf("router-a still reaches deleted laptop-z (%d replies)", n)
	}

	// The cached netmap holds the bad peers too: a restart while coord
	// is down still brings router-b back and names the left-out peers.
	m.Coord.Kill()
	if err := m.A.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	first = waitPing(t, m.A1, testbed.B1IP, 15*time.Second)
	t.Logf("a1 -> b1 from the cached netmap after %s", fmtMs(first))
	if rej, engineErr := rejectedPeers(t, m.A); len(rej) != 2 || engineErr != "" {
		t.Errorf("after restart from cache: left out %+v, engine_error %q; want the same two peers", rej, engineErr)
	}
	fmt.Printf("S19: router-a left out %d bad peers and kept applying changes\n", len(rej))
	noSecretsInLogs(t, m.World, secrets)
}
