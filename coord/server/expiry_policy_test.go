package server

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// TestPolicyDisablesKeyExpiry: a node that the policy's nodeAttrs give
// lanmesh:disable-key-expiry outlives its 1 s stored expiry: it stays in
// its peer's netmap with no key expiry, its own stream stays open, a map
// request and a re-registration without an auth key are accepted, and
// nodes list says "off by policy". Taking the attribute out of the
// policy drops it at once (it is past its stored expiry, which was kept),
// and its next map request is refused as expired. A logout (ExpireNode)
// is not undone by the policy.
func TestPolicyDisablesKeyExpiry(t *testing.T) {
	tc := startCoord(t, t.TempDir(), "", &syncBuf{})
	ctx := context.Background()
	ak := tc.newKey(true)
	a := tc.join("a", ak)
	b := tc.join("b", ak)
	c := tc.join("c", ak)
	withAttr := `{"nodeAttrs": [{"target": ["100.64.0.0/10"], "attr": ["funnel"]}, {"target": ["` + b.self.Addresses[0].String() + `", "` + c.self.Addresses[0].String() + `"], "attr": ["lanmesh:disable-key-expiry"]}], ` + allowAll[1:]
	if err := tc.do("POST", adminapi.PathPolicy, adminapi.PolicyRequest{Body: withAttr}, nil); err != nil {
		t.Fatal(err)
	}
	as := a.openMap(wire.MapRequest{})
	full := as.waitFor(t, "a's full map with b and c", func(m *wire.MapMessage) bool {
		return m.Full && peerIn(m.Peers, b.self.ID, func(p wire.Node) bool { return p.KeyExpiry.IsZero() }) &&
			peerIn(m.Peers, c.self.ID, func(p wire.Node) bool { return p.KeyExpiry.IsZero() })
	})
	if full.Self == nil || full.Self.KeyExpiry.IsZero() {
		t.Fatalf("a, not targeted, lost its key expiry: %+v", full.Self)
	}
	bs := b.openMap(wire.MapRequest{})
	bfull := bs.waitFor(t, "b's full map", func(m *wire.MapMessage) bool { return m.Full })
	if bfull.Self == nil || !bfull.Self.KeyExpiry.IsZero() {
		t.Fatalf("b's own netmap shows a key expiry: %+v", bfull.Self)
	}

	var n adminapi.Node
	for _, name := range []string{"b", "c"} {
		if err := tc.do("POST", adminapi.NodeExpiryPath(name), adminapi.ExpiryRequest{In: "1s"}, &n); err != nil {
			t.Fatal(err)
		}
		if !n.KeyExpiryOffByPolicy || n.Expired || n.KeyExpiry.IsZero() {
			t.Fatalf("%s after --in 1s under the attribute: %+v", name, n)
		}
	}
	// Past the stored expiry (and the hub's timer for it): still there.
	deadline := time.After(time.Until(n.KeyExpiry) + time.Second)
wait:
	for {
		select {
		case m := <-as.msgs:
			if slices.Contains(m.PeersRemoved, b.self.ID) || slices.Contains(m.PeersRemoved, c.self.ID) {
				t.Fatalf("a lost a peer whose expiry the policy turns off: %+v", m.PeersRemoved)
			}
		case <-deadline:
			break wait
		}
	}
	select {
	case <-bs.done:
		t.Fatalf("b's stream closed past its stored expiry: %v", bs.err)
	default:
	}
	errStop := errors.New("stop")
	if err := b.c.Map(ctx, wire.MapRequest{NodeKey: b.nk}, func(*wire.MapMessage) error { return errStop }); !errors.Is(err, errStop) {
		t.Fatalf("b's map request past its stored expiry: %v", err)
	}
	var nodes []adminapi.Node
	if err := tc.do("GET", adminapi.PathNodes, nil, &nodes); err != nil {
		t.Fatal(err)
	}
	for _, ln := range nodes {
		if ln.Name == "b" && (!ln.KeyExpiryOffByPolicy || ln.Expired || ln.KeyExpiry.IsZero()) {
			t.Fatalf("nodes list: %+v", ln)
		}
	}
	// A known node re-registering without an auth key (a new node key)
	// is let in: its expiry is off.
	nk := key.NewNode().Public()
	if rr, err := b.c.Register(ctx, wire.RegisterRequest{NodeKey: nk, Hostname: "b"}); err != nil || rr.Node.ID != b.self.ID {
		t.Fatalf("re-register past the stored expiry: %+v %v", rr.Node, err)
	}
	b.nk = nk

	// c logs out: expired on purpose, the policy does not bring it back.
	var cn adminapi.Node
	if err := tc.do("POST", adminapi.NodeExpirePath("c"), nil, &cn); err != nil {
		t.Fatal(err)
	}
	if cn.KeyExpiryOffByPolicy || !cn.Expired {
		t.Fatalf("c after nodes expire: %+v", cn)
	}
	as.waitFor(t, "c removed after nodes expire", removed(c.self.ID))

	// The attribute leaves the policy: b is past its stored expiry and
	// leaves at once.
	start := time.Now()
	if err := tc.do("POST", adminapi.PathPolicy, adminapi.PolicyRequest{Body: allowAll}, nil); err != nil {
		t.Fatal(err)
	}
	as.waitFor(t, "b removed once the attribute is gone", removed(b.self.ID))
	t.Logf("attribute removed -> b left a's netmap in %v", time.Since(start))
	b.expiredOut(t, bs, "after the attribute was removed")
	if _, err := b.c.Register(ctx, wire.RegisterRequest{NodeKey: key.NewNode().Public(), Hostname: "b"}); err == nil {
		t.Fatal("re-register without an auth key accepted after the attribute was removed")
	}
}
