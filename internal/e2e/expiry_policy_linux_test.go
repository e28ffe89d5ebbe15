package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
)

// TestPolicyKeyExpiryOff: real agents. The policy's nodeAttrs give
// router-b lanmesh:disable-key-expiry; its stored key expiry (3 s)
// passes and it stays in router-a's WireGuard device, a1 still reaches
// b1, and router-b does not need re-auth; nodes list says "off
// (policy)". The attribute leaves the policy: router-b, past its stored
// expiry, leaves router-a's device at once and needs re-auth.
func TestPolicyKeyExpiryOff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	all := filepath.Join(dir, "all.hujson")
	if err := os.WriteFile(all, []byte(`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	m := meshWith(t, testbed.StandardOptions{}, testbed.MeshOptions{
		BeforeJoin: func(ctx context.Context, c *testbed.Coord) error {
			_, err := c.Admin(ctx, "policy", "set", all)
			return err
		},
	})
	ctx := withTimeout(t, 2*time.Minute)
	waitPing(t, m.A1, testbed.B1IP, 15*time.Second)
	b, err := m.B.Status(ctx)
	if err != nil || len(b.Self.Addresses) == 0 {
		t.Fatalf("router-b status: %v %+v", err, b)
	}
	bKey, bAddr := b.Self.Key, strings.TrimSuffix(b.Self.Addresses[0], "/32")
	off := filepath.Join(dir, "off.hujson")
	body := fmt.Sprintf(`{"nodeAttrs": [{"target": [%q], "attr": ["lanmesh:disable-key-expiry"]}],
		"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`, bAddr)
	if err := os.WriteFile(off, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := m.Coord.Admin(ctx, "policy", "set", off); err != nil {
		t.Fatalf("policy set: %v %s", err, r.Stderr)
	}
	r, err := m.Coord.Admin(ctx, "nodes", "expiry", "router-b", "--in", "3s", "--json")
	if err != nil {
		t.Fatalf("nodes expiry: %v", err)
	}
	var n struct {
		KeyExpiry time.Time `json:"key_expiry"`
		Off       bool      `json:"key_expiry_off_by_policy"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &n); err != nil || n.KeyExpiry.IsZero() || !n.Off {
		t.Fatalf("nodes expiry --json under the attribute: %v %s", err, r.Stdout)
	}
	time.Sleep(time.Until(n.KeyExpiry) + 2*time.Second)
	if st, err := m.A.Status(ctx); err != nil || !st.DevicePeer(bKey) {
		t.Fatalf("router-b left router-a's WireGuard device past its stored expiry although the policy turns it off (%v)", err)
	}
	if got, _ := m.A1.Ping(ctx, testbed.B1IP, 2, time.Second); got == 0 {
		t.Error("a1 no longer reaches b1 past router-b's stored expiry")
	}
	if st, err := m.B.Status(ctx); err != nil || st.NeedsReauth || st.BackendState != "Running" {
		t.Fatalf("router-b past its stored expiry: %v state %s needs_reauth %v", err, st.BackendState, st.NeedsReauth)
	}
	list, err := m.Coord.Admin(ctx, "nodes", "list")
	if err != nil || !strings.Contains(list.Stdout, "off (policy)") {
		t.Errorf("nodes list does not show off (policy): %v\n%s", err, list.Stdout)
	}

	start := time.Now()
	if r, err := m.Coord.Admin(ctx, "policy", "set", all); err != nil {
		t.Fatalf("policy set: %v %s", err, r.Stderr)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = m.A.WaitStatus(wctx, "router-b's key gone from router-a's WireGuard device", func(s *testbed.Status) bool { return !s.DevicePeer(bKey) })
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attribute removed -> router-b gone from router-a's WireGuard device in %s", fmtMs(time.Since(start)))
	if _, err := m.B.WaitStatus(ctx, "router-b needs re-auth", func(s *testbed.Status) bool { return s.NeedsReauth }); err != nil {
		t.Fatal(err)
	}
}
