package netcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/derp/stun"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Report is the result of one check. Latencies are round-trip times.
type Report struct {
	UDP  bool `json:"udp"`  // some STUN server answered
	IPv4 bool `json:"ipv4"` // an IPv4 STUN server answered
	IPv6 bool `json:"ipv6"` // an IPv6 STUN server answered
	// GlobalV4 are the distinct IPv4 mapped addresses STUN servers saw,
	// sorted; more than one means the NAT maps per destination.
	GlobalV4 []netip.AddrPort `json:"global_v4,omitempty"`
	GlobalV6 netip.AddrPort   `json:"global_v6,omitzero"`
	// MappingVariesByDest is nil when fewer than two IPv4 STUN servers
	// answered (cannot tell); true means endpoint-dependent ("hard",
	// symmetric) NAT: peers cannot reach the address STUN reports, so
	// direct paths need the peer's side to be easy.
	MappingVariesByDest *bool `json:"mapping_varies_by_dest,omitempty"`

	RegionLatency      map[int]time.Duration `json:"region_latency"` // best measure per region
	RegionV4Latency    map[int]time.Duration `json:"region_v4_latency,omitempty"`
	RegionV6Latency    map[int]time.Duration `json:"region_v6_latency,omitempty"`
	RegionHTTPSLatency map[int]time.Duration `json:"region_https_latency,omitempty"` // when STUN failed
	PreferredRegion    int                   `json:"preferred_region,omitempty"`     // 0: none reachable
}

// Config says how a Checker reaches the network. Give Conn, and Run reads
// it while it runs; or give Send and feed every STUN packet that arrives on
// your socket to HandleSTUN (magicsock's shared socket).
type Config struct {
	Conn net.PacketConn
	Send func(pkt []byte, dst netip.AddrPort) error
	// STUNTimeout bounds the STUN phase (default 3 s); HTTPSTimeout the
	// relay latency fallback (default 5 s).
	STUNTimeout  time.Duration
	HTTPSTimeout time.Duration
	Logger       *slog.Logger
	// Dial opens the TCP connections of the relay latency fallback; nil
	// uses a net.Dialer. The agent passes one that dials inside the data
	// plane's network namespace.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Resolve looks up a relay node's HostName when the map gives no IP
	// (nil: the Go resolver dialling through Dial).
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Checker runs checks; one Run at a time.
type Checker struct {
	cfg Config
	log *slog.Logger

	run sync.Mutex // one Run at a time

	mu       sync.Mutex
	inflight map[stun.TxID]*txn
}

// txn is one transmission of a Binding request.
type txn struct {
	probe *probe
	sent  time.Time
}

// probe is one STUN server of one region.
type probe struct {
	region int
	server netip.AddrPort
	done   chan struct{} // closed on the first answer
	mapped netip.AddrPort
	rtt    time.Duration
}

// New checks cfg.
func New(cfg Config) (*Checker, error) {
	if (cfg.Conn == nil) == (cfg.Send == nil) {
		return nil, errors.New("netcheck: set exactly one of Conn and Send")
	}
	if cfg.STUNTimeout <= 0 {
		cfg.STUNTimeout = 3 * time.Second
	}
	if cfg.HTTPSTimeout <= 0 {
		cfg.HTTPSTimeout = 5 * time.Second
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.Resolve == nil {
		r := &net.Resolver{PreferGo: true, Dial: cfg.Dial}
		cfg.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return r.LookupNetIP(ctx, "ip", host)
		}
	}
	c := &Checker{cfg: cfg, log: cfg.Logger, inflight: map[stun.TxID]*txn{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Conn != nil {
		c.cfg.Send = func(pkt []byte, dst netip.AddrPort) error {
			_, err := cfg.Conn.WriteTo(pkt, net.UDPAddrFromAddrPort(dst))
			return err
		}
	}
	return c, nil
}

// HandleSTUN takes a packet that arrived on the shared socket; it reports
// whether the packet answered one of our requests.
func (c *Checker) HandleSTUN(pkt []byte, src netip.AddrPort) bool {
	tx, mapped, err := stun.ParseResponse(pkt)
	if err != nil {
		return false
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.inflight[tx]
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if t == nil || src != t.probe.server {
		return false // stale, or not from the server we asked: spoofed
	}
	delete(c.inflight, tx)
	p := t.probe
	select {
	case <-p.done:
		return true // a retransmission's answer; the first one counted
	default:
	}
	p.mapped, p.rtt = netip.AddrPortFrom(mapped.Addr().Unmap(), mapped.Port()), now.Sub(t.sent)
	close(p.done)
	return true
}

// retransmits: when to resend an unanswered request, from the start of
// the STUN phase (RFC 5389 suggests 500 ms doubling; we are more eager
// because a lost first packet otherwise costs the whole answer's latency).
var retransmits = []time.Duration{0, 250 * time.Millisecond, 750 * time.Millisecond, 1500 * time.Millisecond}

// Run checks the network against the relays and STUN servers of dm.
func (c *Checker) Run(ctx context.Context, dm *wire.DERPMap) (*Report, error) {
	if dm == nil || len(dm.Regions) == 0 {
		return nil, errors.New("netcheck: empty relay map: nothing to check against")
	}
	if err := dm.Validate(); err != nil {
		return nil, fmt.Errorf("netcheck: %w", err)
	}
	c.run.Lock()
	defer c.run.Unlock()

	stunCtx, cancel := context.WithTimeout(ctx, c.cfg.STUNTimeout)
	defer cancel()
	probes := c.probes(stunCtx, dm)
	stop := func() {}
	if c.cfg.Conn != nil {
		stop = c.readLoop()
	}
	c.stunPhase(stunCtx, probes)
	stop()

	c.mu.Lock()
	clear(c.inflight)
	c.mu.Unlock()

	r := &Report{RegionLatency: map[int]time.Duration{}, RegionV4Latency: map[int]time.Duration{},
		RegionV6Latency: map[int]time.Duration{}, RegionHTTPSLatency: map[int]time.Duration{}}
	var v4 []netip.AddrPort
	for _, p := range probes {
		select {
		case <-p.done:
		default:
			continue
		}
		r.UDP = true
		lat := r.RegionV4Latency
		if p.server.Addr().Is4() {
			r.IPv4 = true
			v4 = append(v4, p.mapped)
		} else {
			r.IPv6 = true
			r.GlobalV6 = p.mapped
			lat = r.RegionV6Latency
		}
		setMin(lat, p.region, p.rtt)
		setMin(r.RegionLatency, p.region, p.rtt)
	}
	r.GlobalV4 = distinct(v4)
	if len(v4) >= 2 {
		varies := len(r.GlobalV4) > 1
		r.MappingVariesByDest = &varies
	}

	// Regions STUN could not reach (UDP blocked, or STUN off): measure
	// over TCP+TLS, which is how the relay would carry our traffic.
	var missing []wire.DERPRegion
	for _, reg := range dm.Regions {
		if _, ok := r.RegionLatency[reg.ID]; !ok {
			missing = append(missing, reg)
		}
	}
	for id, d := range c.httpsLatencies(ctx, missing) {
		r.RegionHTTPSLatency[id] = d
		r.RegionLatency[id] = d
	}
	r.PreferredRegion = preferred(r.RegionLatency)
	c.log.Debug("netcheck: done", "udp", r.UDP, "ipv4", r.IPv4, "ipv6", r.IPv6, "preferred", r.PreferredRegion)
	return r, ctx.Err()
}

func (c *Checker) probes(ctx context.Context, dm *wire.DERPMap) []*probe {
	var out []*probe
	seen := map[netip.AddrPort]bool{}
	for _, reg := range dm.Regions {
		for _, n := range reg.Nodes {
			for _, ap := range c.stunAddrs(ctx, n) {
				if seen[ap] {
					continue
				}
				seen[ap] = true
				out = append(out, &probe{region: reg.ID, server: ap, done: make(chan struct{})})
			}
		}
	}
	return out
}

// resolveTimeout bounds the lookup of one relay host name, so a slow
// resolver costs a check little of its STUN time.
const resolveTimeout = time.Second

// stunAddrs are n's STUN servers: its IPs from the map, else its host
// name resolved (a relay configured by name only still tells us our
// mapped address).
func (c *Checker) stunAddrs(ctx context.Context, n wire.DERPNode) []netip.AddrPort {
	if aps := n.STUNAddrs(); len(aps) > 0 || n.STUNPort < 0 || n.HostName == "" {
		return aps
	}
	port := uint16(n.STUNPort)
	if port == 0 {
		port = 3478
	}
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ips, err := c.cfg.Resolve(rctx, n.HostName)
	if err != nil {
		c.log.Debug("netcheck: resolve relay", "node", n.Name, "host", n.HostName, "err", err)
		return nil
	}
	var out []netip.AddrPort
	var have4, have6 bool
	for _, ip := range ips {
		ip = ip.Unmap()
		// One address per family: a second of the same family would only
		// look like a mapping that varies by destination.
		if !ip.IsValid() || (ip.Is4() && have4) || (ip.Is6() && have6) {
			continue
		}
		have4, have6 = have4 || ip.Is4(), have6 || ip.Is6()
		out = append(out, netip.AddrPortFrom(ip, port))
	}
	return out
}

// stunPhase sends every probe at once and retransmits the unanswered
// ones until all answered or ctx ends. All go out of the same socket, so
// comparing their mapped addresses reveals per-destination mapping.
func (c *Checker) stunPhase(ctx context.Context, probes []*probe) {
	start := time.Now()
	for _, at := range retransmits {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(at))):
		}
		pending := 0
		for _, p := range probes {
			select {
			case <-p.done:
				continue
			default:
			}
			pending++
			tx := stun.NewTxID()
			c.mu.Lock()
			c.inflight[tx] = &txn{probe: p, sent: time.Now()}
			c.mu.Unlock()
			if err := c.cfg.Send(stun.BindingRequest(tx), p.server); err != nil {
				c.log.Debug("netcheck: stun send", "server", p.server.String(), "err", err)
			}
		}
		if pending == 0 {
			return
		}
	}
	// Wait for the last answers (or the timeout), returning early when
	// everyone answered.
	for _, p := range probes {
		select {
		case <-p.done:
		case <-ctx.Done():
			return
		}
	}
}

// readLoop reads cfg.Conn, feeding HandleSTUN, until stop is called.
func (c *Checker) readLoop() (stop func()) {
	conn := c.cfg.Conn
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFrom(buf)
			select {
			case <-quit:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue // e.g. ICMP port unreachable surfaced as an error
			}
			if ua, ok := from.(*net.UDPAddr); ok {
				c.HandleSTUN(buf[:n], ua.AddrPort())
			}
		}
	}()
	return func() {
		close(quit)
		conn.SetReadDeadline(time.Unix(1, 0))
		<-done
		conn.SetReadDeadline(time.Time{})
	}
}

func setMin(m map[int]time.Duration, k int, d time.Duration) {
	if old, ok := m[k]; !ok || d < old {
		m[k] = d
	}
}

func distinct(aps []netip.AddrPort) []netip.AddrPort {
	out := slices.Clone(aps)
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return slices.Compact(out)
}

// preferred is the region with the lowest latency (lowest ID on a tie).
func preferred(lat map[int]time.Duration) int {
	best, bestD := 0, time.Duration(0)
	for id, d := range lat {
		if best == 0 || d < bestD || (d == bestD && id < best) {
			best, bestD = id, d
		}
	}
	return best
}
