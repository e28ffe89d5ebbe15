package firewall

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/nstest"
)

// The namespace helpers live in internal/nstest; these names keep the
// tests short.
var (
	requireRoot = nstest.RequireRoot
	run         = nstest.Run
	inNS        = nstest.Do
)

// newNS makes a namespace named lmfw-<pid>-<n>, deleted when the test ends.
func newNS(t *testing.T) string {
	t.Helper()
	return nstest.New(t, "lmfw")
}

// The world of these tests, all in namespaces the test makes:
//
//	peer (mesh peer)  m0 ---- lanmesh0  node (runs the firewall)  lan0 ---- eth0  lanhost
//	100.64.0.2/10, .3/10      100.64.0.1/10                       198.18.1.1/24   198.18.1.2/24
//	198.18.50.2/24 (S2)                                                           169.254.169.254/32 (S17)
//
// A veth named like the mesh TUN stands in for WireGuard: the filter
// only sees the interface name, and packets are real.
type world struct {
	peer, node, lan string
	fw              *Firewall
}

const meshIf = "lanmesh0"

var (
	nodeMesh  = netip.MustParseAddr("100.64.0.1")
	peerMesh  = netip.MustParseAddr("100.64.0.2")
	peerMesh2 = netip.MustParseAddr("100.64.0.3")
	peerWild  = netip.MustParseAddr("198.18.50.2") // not a mesh address
	nodeLAN   = netip.MustParseAddr("198.18.1.1")
	lanHost   = netip.MustParseAddr("198.18.1.2")
	metadata  = netip.MustParseAddr("169.254.169.254")
	nodeMesh6 = netip.MustParseAddr("fd7a:115c:a1e0::1")
	peerMesh6 = netip.MustParseAddr("fd7a:115c:a1e0::2")
)

func newWorld(t *testing.T) *world {
	t.Helper()
	requireRoot(t)
	w := &world{peer: newNS(t), node: newNS(t), lan: newNS(t)}
	run(t, "ip", "-n", w.peer, "link", "add", "m0", "type", "veth", "peer", "name", meshIf, "netns", w.node)
	run(t, "ip", "-n", w.node, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", w.lan)
	for _, c := range [][]string{
		{w.peer, "addr", "add", "100.64.0.2/10", "dev", "m0"},
		{w.peer, "addr", "add", "100.64.0.3/10", "dev", "m0"},
		{w.peer, "addr", "add", "198.18.50.2/24", "dev", "m0"},
		{w.peer, "addr", "add", "fd7a:115c:a1e0::2/48", "dev", "m0", "nodad"},
		{w.peer, "link", "set", "m0", "up"},
		{w.peer, "route", "add", "198.18.1.0/24", "via", "100.64.0.1"},
		{w.peer, "route", "add", "169.254.169.254/32", "via", "100.64.0.1"},
		{w.node, "addr", "add", "100.64.0.1/10", "dev", meshIf},
		{w.node, "addr", "add", "fd7a:115c:a1e0::1/48", "dev", meshIf, "nodad"},
		{w.node, "addr", "add", "198.18.1.1/24", "dev", "lan0"},
		{w.node, "link", "set", meshIf, "up"},
		{w.node, "link", "set", "lan0", "up"},
		{w.node, "route", "add", "198.18.50.0/24", "dev", meshIf},
		{w.node, "route", "add", "169.254.169.254/32", "via", "198.18.1.2"},
		{w.lan, "addr", "add", "198.18.1.2/24", "dev", "eth0"},
		{w.lan, "addr", "add", "169.254.169.254/32", "dev", "eth0"},
		{w.lan, "link", "set", "eth0", "up"},
		{w.lan, "route", "add", "default", "via", "198.18.1.1"},
	} {
		run(t, append([]string{"ip", "-n"}, c...)...)
	}
	run(t, "ip", "netns", "exec", w.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	w.fw = New(testLogger())
	t.Cleanup(func() { inNS(w.node, func() { w.fw.Close() }) })
	// Echo servers: every port a test dials has a listener, so a
	// failure to connect is the firewall, not a closed port.
	for _, port := range []int{22, 53, 80, 445} {
		w.listenTCP(t, w.node, port)
		w.listenTCP(t, w.lan, port)
		w.listenTCP(t, w.peer, port)
	}
	w.listenUDP(t, w.node, 53)
	return w
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (w *world) set(t *testing.T, cfg Config) {
	t.Helper()
	if cfg.MeshIface == "" {
		cfg.MeshIface = meshIf
	}
	var err error
	if nerr := inNS(w.node, func() { err = w.fw.Set(cfg) }); nerr != nil {
		t.Fatal(nerr)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (w *world) listenTCP(t *testing.T, ns string, port int) {
	t.Helper()
	var ln net.Listener
	var err error
	inNS(ns, func() { ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port)) })
	if err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
}

func (w *world) listenUDP(t *testing.T, ns string, port int) {
	t.Helper()
	var pc net.PacketConn
	var err error
	inNS(ns, func() { pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port)) })
	if err != nil {
		t.Fatalf("listen udp in %s: %v", ns, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo(b[:n], from)
		}
	}()
}

const dialTimeout = 700 * time.Millisecond

// errNoAnswer is what a dropped packet looks like from the sender.
var errNoAnswer = errors.New("no answer")

// tcp connects from src (in ns) to dst:port and echoes a byte.
func tcp(ns string, src, dst netip.Addr, port uint16) error {
	var err error
	if nerr := inNS(ns, func() {
		d := net.Dialer{Timeout: dialTimeout}
		if src.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		}
		var c net.Conn
		c, err = d.Dial("tcp", netip.AddrPortFrom(dst, port).String())
		if err != nil {
			return
		}
		defer c.Close()
		err = echo(c)
	}); nerr != nil {
		return nerr
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return errNoAnswer
	}
	return err
}

func udp(ns string, src, dst netip.Addr, port uint16) error {
	var err error
	if nerr := inNS(ns, func() {
		var c *net.UDPConn
		c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, port)))
		if err != nil {
			return
		}
		defer c.Close()
		err = echo(c)
	}); nerr != nil {
		return nerr
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return errNoAnswer
	}
	return err
}

func echo(c net.Conn) error {
	c.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if b[0] != 'x' {
		return fmt.Errorf("echo returned %q", b)
	}
	return nil
}

func ping(ns string, src, dst netip.Addr) error {
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", "-I", src.String(), dst.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", errNoAnswer, out)
	}
	return nil
}

// expect asserts a connection attempt's outcome: admitted, or dropped
// without an answer (not refused: a denied packet gets no reply).
func expect(t *testing.T, what string, err error, admitted bool) {
	t.Helper()
	switch {
	case admitted && err != nil:
		t.Errorf("%s: want admitted, got %v", what, err)
	case !admitted && err == nil:
		t.Errorf("%s: want dropped, got through", what)
	case !admitted && !errors.Is(err, errNoAnswer):
		t.Errorf("%s: want no answer, got %v", what, err)
	}
}
