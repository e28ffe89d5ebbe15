package firewall

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// seenFrom dials dst:port from src in ns and returns the source address
// the server reports.
func seenFrom(t *testing.T, ns string, src, dst netip.Addr, port uint16) string {
	t.Helper()
	var line string
	var err error
	inNS(ns, func() {
		d := net.Dialer{Timeout: dialTimeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		var c net.Conn
		if c, err = d.Dial("tcp", netip.AddrPortFrom(dst, port).String()); err != nil {
			return
		}
		defer c.Close()
		line, err = bufio.NewReader(c).ReadString('\n')
	})
	if err != nil {
		t.Fatalf("%v -> %v:%d: %v", src, dst, port, err)
	}
	return strings.TrimSpace(line)
}

// TestExitMasquerade: an exit node masquerades mesh traffic to the
// internet even with SNAT off, while its advertised subnets keep the mesh
// source (what SNAT off promises them).
func TestExitMasquerade(t *testing.T) {
	w := newWorld(t)
	internet := netip.MustParseAddr("198.18.60.2")
	for _, c := range [][]string{
		{w.lan, "addr", "add", "198.18.60.2/24", "dev", "eth0"},
		{w.node, "route", "add", "198.18.60.0/24", "via", "198.18.1.2"},
		{w.peer, "route", "add", "198.18.60.0/24", "via", "100.64.0.1"},
	} {
		run(t, append([]string{"ip", "-n"}, c...)...)
	}
	var ln net.Listener
	var err error
	inNS(w.lan, func() { ln, err = net.Listen("tcp", ":7070") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
			c.Write([]byte(ap.Addr().Unmap().String() + "\n"))
			c.Close()
		}
	}()

	cfg := baseConfig(&wire.PacketFilter{Inbound: []wire.FilterRule{tcpRule(pfx("100.64.0.2/32"), pfx("0.0.0.0/0"), 7070)}})
	cfg.SNAT = false
	cfg.AdvertisedRoutes = pfx("198.18.1.0/24", "0.0.0.0/0", "::/0")
	w.set(t, cfg)
	if got := seenFrom(t, w.peer, peerMesh, internet, 7070); got != "198.18.1.1" {
		t.Errorf("SNAT off, exit node: the internet sees %s, want the node's address 198.18.1.1", got)
	}
	if got := seenFrom(t, w.peer, peerMesh, lanHost, 7070); got != peerMesh.String() {
		t.Errorf("SNAT off, exit node: the advertised subnet sees %s, want the mesh source %s", got, peerMesh)
	}
	cfg.SNAT = true
	w.set(t, cfg)
	if got := seenFrom(t, w.peer, peerMesh, lanHost, 7070); got != "198.18.1.1" {
		t.Errorf("SNAT on: the subnet sees %s, want 198.18.1.1", got)
	}
	cfg.SNAT = false
	cfg.AdvertisedRoutes = pfx("198.18.1.0/24")
	cfg.Filter.Inbound[0].Dst = pfx("198.18.0.0/15")
	w.set(t, cfg)
	if got := seenFrom(t, w.peer, peerMesh, lanHost, 7070); got != peerMesh.String() {
		t.Errorf("SNAT off, no exit node: the subnet sees %s, want %s", got, peerMesh)
	}
}
