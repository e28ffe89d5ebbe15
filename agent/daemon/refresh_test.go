package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/agent/dns"
	"github.com/lanmesh/lanmesh/agent/engine"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// netEngine offers the optional engine interfaces.
type netEngine struct {
	*fakeEngine
	emu     sync.Mutex
	eps     []netip.AddrPort
	changed int
}

func (e *netEngine) LocalEndpoints() []netip.AddrPort {
	e.emu.Lock()
	defer e.emu.Unlock()
	return slices.Clone(e.eps)
}

func (e *netEngine) NetworkChanged() { e.emu.Lock(); e.changed++; e.emu.Unlock() }

func (e *netEngine) set(eps ...string) {
	e.emu.Lock()
	defer e.emu.Unlock()
	e.eps = nil
	for _, s := range eps {
		e.eps = append(e.eps, netip.MustParseAddrPort(s))
	}
}

func (e *netEngine) changes() int { e.emu.Lock(); defer e.emu.Unlock(); return e.changed }

// A network event that changes the endpoint set reopens the netmap
// stream with the new endpoints within a second, and tells the engine.
func TestEndpointChangeRestartsStream(t *testing.T) {
	self := node(1, "router-a")
	coord := newFakeCoord(self)
	eng := &netEngine{fakeEngine: &fakeEngine{}}
	eng.set("203.0.113.7:41641") // STUN-mapped: wins over interfaces
	notify := make(chan func(), 1)
	h := newHarnessWith(t, t.TempDir(), coord, func(_ *config.Config, o *Options) {
		o.NewEngine = func(engine.Options, *slog.Logger) (engine.Engine, error) { return eng, nil }
		o.WatchNetwork = func(ctx context.Context, n func()) error { notify <- n; <-ctx.Done(); return nil }
	})
	fire := <-notify
	s := &session{msgs: make(chan *wire.MapMessage, 10)}
	go func() {
		r := <-coord.mapReqs
		if len(r.Endpoints) != 1 || r.Endpoints[0].String() != "203.0.113.7:41641" {
			t.Errorf("first MapRequest endpoints = %v", r.Endpoints)
		}
		s.msgs <- fullMap(self)
		coord.sessions <- s
	}()
	if _, err := h.d.Up(context.Background(), upReq()); err != nil {
		t.Fatal(err)
	}

	// An event without an endpoint change: engine told, no new stream.
	fire()
	waitFor(t, "NetworkChanged", func() bool { return eng.changes() == 1 })
	select {
	case r := <-coord.mapReqs:
		t.Fatalf("stream reopened without an endpoint change: %+v", r)
	case <-time.After(500 * time.Millisecond):
	}

	// A burst of events with a new address: one new request, fast.
	eng.set("203.0.113.9:41641", "198.18.1.2:41641")
	start := time.Now()
	for range 5 {
		fire()
	}
	select {
	case r := <-coord.mapReqs:
		if took := time.Since(start); took > time.Second {
			t.Errorf("new MapRequest after %v, want < 1s", took)
		}
		if fmt.Sprint(r.Endpoints) != "[198.18.1.2:41641 203.0.113.9:41641]" {
			t.Fatalf("new endpoints = %v", r.Endpoints)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no new MapRequest after the endpoints changed")
	}
	// The follow-up checks after the first event may reopen the stream
	// before the burst's debounced check runs: wait for it, then make sure
	// the burst was one call.
	waitFor(t, "debounced NetworkChanged", func() bool { return eng.changes() >= 2 })
	time.Sleep(500 * time.Millisecond)
	if n := eng.changes(); n != 2 {
		t.Errorf("NetworkChanged calls = %d, want 2 (debounced)", n)
	}
	coord.open(self)
	waitFor(t, "reconnected", func() bool { return h.d.Status(context.Background()).Coord.Connected })
}

// dns.publish_leases: named live leases inside the advertised routes
// reach coord in MapRequest.LANHosts, and own DNS as <host>.<self>.
func TestPublishLeases(t *testing.T) {
	self := node(1, "router-a")
	coord := newFakeCoord(self)
	leases := filepath.Join(t.TempDir(), "dhcp.leases")
	h := newHarnessWith(t, t.TempDir(), coord, func(c *config.Config, _ *Options) {
		c.DNS.PublishLeases = true
		c.DNS.LeasesFile = leases
	})
	routes := pfx("198.19.1.0/24")
	req := upReq()
	req.AdvertiseRoutes = &routes
	go func() { <-coord.mapReqs; coord.open(self) }()
	if _, err := h.d.Up(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	body := fmt.Sprintf("%d aa:bb:cc:dd:ee:01 198.19.1.10 NAS 01:aa\n%d aa:bb:cc:dd:ee:02 192.168.7.5 elsewhere *\n%d aa:bb:cc:dd:ee:03 198.19.1.11 old *\n", exp, exp, time.Now().Add(-time.Hour).Unix()) // example data: a lease outside the routes
	if err := os.WriteFile(leases, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	h.d.refresh(false) // the 10 s poll, now
	select {
	case r := <-coord.mapReqs:
		want := []wire.LANHost{{Name: "nas", Addr: netip.MustParseAddr("198.19.1.10")}}
		if !slices.Equal(r.LANHosts, want) {
			t.Fatalf("LANHosts = %+v, want %+v", r.LANHosts, want)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no new MapRequest after the leases changed")
	}
	coord.open(self)
	h.d.refresh(false) // unchanged: no new stream
	select {
	case r := <-coord.mapReqs:
		t.Fatalf("stream reopened without a lease change: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestLANHosts(t *testing.T) {
	now := time.Unix(1700000000, 0)
	l := func(name, addr string, exp int64) dns.Lease {
		le := dns.Lease{Hostname: name, Addr: netip.MustParseAddr(addr)}
		if exp != 0 {
			le.Expiry = time.Unix(exp, 0)
		}
		return le
	}
	got := lanHosts([]dns.Lease{
		l("tv", "198.19.1.20", 0),
		l("nas", "198.19.1.10", 1700000100),
		l("nas", "198.19.1.10", 1700000100), // duplicate
		l("gone", "198.19.1.30", 1699999999),
		l("", "198.19.1.40", 0),
		l("outside", "10.0.0.5", 0), // example data: outside the routes
	}, pfx("198.19.1.0/24"), now)
	want := []wire.LANHost{{Name: "nas", Addr: netip.MustParseAddr("198.19.1.10")}, {Name: "tv", Addr: netip.MustParseAddr("198.19.1.20")}}
	if !slices.Equal(got, want) {
		t.Fatalf("lanHosts = %+v", got)
	}
}
