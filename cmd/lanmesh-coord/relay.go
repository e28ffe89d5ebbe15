package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"

	"github.com/lanmesh/lanmesh/coord/server"
	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// relayFlags are serve's flags for the embedded relay and the DERP map.
type relayFlags struct {
	derp     bool   // embed relay + STUN
	stunPort int    // 0: no STUN
	mapFile  string // extra regions (lanmesh-derp instances)
	// Embedded relay limits (derp.Options); rate 0: unlimited.
	rate          int64
	queueBytes    int
	maxHandshakes int
	// maxHandshakesPerSource: the share of one source address.
	maxHandshakesPerSource int
}

// setupRelay turns on coord's relay and STUN (unless --derp=false) and
// hands nodes the DERP map: coord's own region first, then --derp-map's.
// Call it after the node API listener ln is open and before Serve.
func setupRelay(srv *server.Server, rf relayFlags, serverURL string, ln net.Listener, stderr io.Writer) error {
	if rf.stunPort < 0 || rf.stunPort > 65535 {
		return usageError{fmt.Sprintf("--stun-port %d: want 0 (off) to 65535", rf.stunPort)}
	}
	var extra *wire.DERPMap
	if rf.mapFile != "" {
		m, err := server.LoadDERPMap(rf.mapFile)
		if err != nil {
			return err
		}
		extra = m
	}
	var coord *wire.DERPRegion
	if rf.derp {
		lnHost, lnPortStr, _ := net.SplitHostPort(ln.Addr().String())
		stunAddr := ""
		if rf.stunPort > 0 {
			// Same host as the node API: a coord bound to one address
			// answers STUN on that address only.
			h := lnHost
			if a, err := netip.ParseAddr(h); err == nil && a.IsUnspecified() {
				h = ""
			}
			stunAddr = net.JoinHostPort(h, strconv.Itoa(rf.stunPort))
		}
		rate := rf.rate
		if rate == 0 {
			rate = derp.NoRateLimit
		}
		bound, err := srv.EnableRelay(server.RelayConfig{STUNAddr: stunAddr, RateBytesPerSec: rate, QueueBytes: rf.queueBytes, MaxHandshakes: rf.maxHandshakes, MaxHandshakesPerSource: rf.maxHandshakesPerSource})
		if err != nil {
			return err
		}
		// Nodes reach the relay where they reach coord: the host of
		// --server-url, and its port when it names one (coord behind a
		// port forward), else the listener's.
		host, port := "", lnPortStr
		if serverURL != "" {
			u, _ := url.Parse(serverURL) // checked by serve
			host = u.Hostname()
			if u.Port() != "" {
				port = u.Port()
			}
		} else if a, err := netip.ParseAddr(lnHost); err == nil && !a.IsUnspecified() {
			host = lnHost
		}
		derpPort, _ := strconv.Atoi(port)
		fmt.Fprintf(stderr, "lanmesh-coord: relay at https://%s/derp", ln.Addr())
		if bound.IsValid() {
			fmt.Fprintf(stderr, ", STUN on udp %s", bound)
		}
		fmt.Fprintln(stderr)
		if host == "" {
			fmt.Fprintln(stderr, "lanmesh-coord: warning: the relay is not in the DERP map nodes get: set --server-url so they know where to find it")
		} else {
			r, err := server.CoordRegion(host, derpPort, int(bound.Port()), srv.Fingerprint())
			if err != nil {
				return err
			}
			coord = &r
		}
	}
	m, err := server.BuildDERPMap(coord, extra)
	if err != nil {
		if rf.mapFile != "" {
			return fmt.Errorf("--derp-map %s: %w", rf.mapFile, err)
		}
		return err
	}
	return srv.SetDERPMap(m)
}
