package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/testbed"
)

// TestStandaloneRelayRevocation (S15, S20, S9; issue 14 acceptance 5):
// with coord's embedded relay off, routers relay through a real
// lanmesh-derp on the testbed internet that learns who may relay from
// coord's watch stream. Then two relay clients holding the routers' node
// keys (the agents stopped, so nothing competes for them) exchange
// packets through it, router-b is deleted at coord, and the test measures
// how long router-b's relayed packets keep arriving and when the relay
// closes its connection: under 1 s, printed.
func TestStandaloneRelayRevocation(t *testing.T) {
	t.Parallel()
	testbed.SkipUnlessRoot(t)
	if _, err := testbed.FindBinaries(); err != nil {
		t.Fatalf("binaries: %v", err)
	}
	ctx := withTimeout(t, 3*time.Minute)
	// No UDP out of site A: router-a can only ever reach router-b through
	// the relay.
	s := testbed.NewStandard(t, testbed.StandardOptions{NATA: testbed.NATNoUDP, NATB: testbed.NATEasy})
	rh, err := s.AddRelayHost("relay", testbed.RelayIP)
	if err != nil {
		t.Fatal(err)
	}
	d, err := testbed.PrepareDerp(ctx, rh, testbed.RelayIP)
	if err != nil {
		t.Fatal(err)
	}
	cfg := t.TempDir()
	token := "relay-token-" + key.NewNode().Public().String()[:24]
	tokFile, mapFile := filepath.Join(cfg, "derp-token"), filepath.Join(cfg, "derp-map.json")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mapFile, []byte(d.DERPMap(2)), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := testbed.StartMeshWith(ctx, s, t.Logf, testbed.MeshOptions{
		Verbose:   true,
		CoordArgs: []string{"--derp=false", "--derp-map", mapFile, "--derp-token-file", tokFile},
		BeforeJoin: func(ctx context.Context, c *testbed.Coord) error {
			r, err := c.Admin(ctx, "fingerprint")
			if err != nil {
				return err
			}
			return d.Start(ctx, "--verify-url", c.URL+"/v1/derp/verify", "--verify-token-file", tokFile,
				"--coord-fingerprint", strings.TrimSpace(r.Stdout), "--verbose")
		},
	})
	if err != nil {
		t.Fatalf("mesh: %v (logs in %s)", err, s.LogDir)
	}

	// Real agents relay through the standalone relay.
	waitPing(t, m.A1, testbed.B1IP, 20*time.Second)
	wantPath(t, m, "relay")
	if !strings.Contains(d.Proc.Log(), "key set from coord") {
		t.Fatalf("lanmesh-derp never got the key set from coord's watch stream; log %s", d.Proc.LogPath)
	}

	// Take the routers' node keys over: stop the agents (their nodes stay
	// registered) and connect as them from the coord host's namespace.
	privs := map[string]key.NodePrivate{}
	for _, a := range []*testbed.Agent{m.A, m.B} {
		st, err := a.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b64, _, err := a.PrivateKey(st.Self.Key)
		if err != nil {
			t.Fatal(err)
		}
		var p key.NodePrivate
		if err := p.UnmarshalText([]byte(b64)); err != nil {
			t.Fatal(err)
		}
		privs[a.Name] = p
		a.Stop()
	}
	connect := func(name string) (*derp.Client, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return derp.ConnectWith(cctx, d.URL, privs[name], derp.ClientOptions{Fingerprint: d.Fingerprint, DialContext: s.Coord.DialContext})
	}
	// The agents' own connections may take a moment to be replaced.
	var ca, cb *derp.Client
	for deadline := time.Now().Add(10 * time.Second); ; {
		if ca == nil {
			ca, err = connect("router-a")
		}
		if err == nil && cb == nil {
			cb, err = connect("router-b")
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to lanmesh-derp with the routers' keys: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer ca.Close()
	defer cb.Close()

	// router-b sends to router-a every 2 ms; a records the last arrival.
	var lastRecv atomic.Int64 // unix nanos of router-b's latest packet at a
	var received atomic.Int64
	go func() {
		for {
			msg, err := ca.RecvMessage()
			if err != nil {
				return
			}
			if msg.Kind == derp.MsgPacket && msg.Key == privs["router-b"].Public() {
				received.Add(1)
				lastRecv.Store(time.Now().UnixNano())
			}
		}
	}()
	var bClosed atomic.Int64 // unix nanos when b's connection ended
	var wg sync.WaitGroup
	stopSend := make(chan struct{})
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopSend:
				return
			case <-tick.C:
			}
			if err := cb.Send(privs["router-a"].Public(), fmt.Appendf(nil, "pkt %d", i)); err != nil {
				bClosed.CompareAndSwap(0, time.Now().UnixNano())
				return
			}
		}
	})
	wg.Go(func() {
		for {
			if _, err := cb.RecvMessage(); err != nil {
				bClosed.CompareAndSwap(0, time.Now().UnixNano())
				return
			}
		}
	})
	defer func() { close(stopSend); cb.Close(); wg.Wait() }()
	for deadline := time.Now().Add(5 * time.Second); received.Load() < 50; {
		if time.Now().After(deadline) {
			t.Fatalf("router-b -> router-a through lanmesh-derp: only %d packets in 5 s", received.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}

	start := time.Now()
	if _, err := m.Coord.Admin(ctx, "nodes", "delete", "router-b"); err != nil {
		t.Fatal(err)
	}
	for time.Since(start) < 3*time.Second && bClosed.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // anything still in flight arrives
	if bClosed.Load() == 0 {
		t.Fatalf("S15: lanmesh-derp still carries the deleted node 3 s after nodes delete (log %s)", d.Proc.LogPath)
	}
	closed := time.Duration(bClosed.Load() - start.UnixNano())
	stopped := time.Duration(lastRecv.Load() - start.UnixNano())
	cut := max(closed, stopped)
	t.Logf("S15: standalone relay: deleted node's last packet arrived %s, its connection closed %s after nodes delete (the admin command included)", fmtMs(stopped), fmtMs(closed))
	fmt.Printf("S15 standalone relay revocation (nodes delete -> relayed traffic stops): %d ms\n", cut.Milliseconds())
	if cut >= time.Second {
		t.Errorf("S15: relayed traffic of a deleted node stopped %v after nodes delete, goal < 1 s", cut)
	}
	if c, err := connect("router-b"); err == nil {
		c.Close()
		t.Fatal("S9: the deleted node reconnected to lanmesh-derp")
	} else if !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("deleted node's reconnect: want a refusal naming it not allowed, got %v", err)
	}
	// router-a is untouched: still on the relay.
	if err := ca.Send(privs["router-b"].Public(), []byte("to nobody")); err != nil {
		t.Errorf("router-a lost the relay when router-b was deleted: %v", err)
	}
	// S11: the relay token never reaches a log.
	noSecretsInLogs(t, m.World, []string{token})
}
