package testbed

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStandardPing proves routing with real packets: every hop answers,
// and the two LANs cannot reach each other without a mesh.
func TestStandardPing(t *testing.T) {
	SkipUnlessRoot(t)
	t.Parallel()
	s := NewStandard(t, StandardOptions{IPv6: true})
	ctx := context.Background()
	for _, c := range []struct {
		from *Host
		to   string
	}{
		{s.RouterA, CoordIP},
		{s.RouterA, WANB},
		{s.Coord, WANA},
		{s.A1, RouterALAN},
		{s.B1, RouterBLAN},
		{s.A1, WANA},            // the router's other side, through its forwarding
		{s.A1, "2001:db8:1::1"}, // IPv6 on the LAN
		{s.RouterA, "2001:db8::2"},
	} {
		if n, err := c.from.Ping(ctx, c.to, 2, time.Second); err != nil || n != 2 {
			t.Errorf("ping %s -> %s: %d replies, %v", c.from.Name, c.to, n, err)
		}
	}
	// Without a mesh the internet has no route to the home LANs.
	if n, err := s.A1.Ping(ctx, B1IP, 1, 500*time.Millisecond); err == nil || n != 0 {
		t.Errorf("a1 reached b1 without a mesh (%d replies)", n)
	}
}

// udpSources sends one datagram from a single local socket on from to
// each of ports on the coord host and returns the source each one saw.
func udpSources(t *testing.T, s *Standard, from *Host, ports ...int) []netip.AddrPort {
	t.Helper()
	var got []netip.AddrPort
	send, err := from.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	for _, port := range ports {
		l, err := s.Coord.ListenPacket("udp4", fmt.Sprintf("%s:%d", CoordIP, port))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		dst := &net.UDPAddr{IP: net.ParseIP(CoordIP), Port: port}
		l.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		var src net.Addr
		for try := 0; try < 5 && src == nil; try++ {
			if _, err := send.WriteTo([]byte("probe"), dst); err != nil {
				t.Fatalf("send to %v: %v", dst, err)
			}
			l.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
			if _, a, err := l.ReadFrom(buf); err == nil {
				src = a
			}
		}
		if src == nil {
			got = append(got, netip.AddrPort{})
			continue
		}
		got = append(got, src.(*net.UDPAddr).AddrPort())
	}
	return got
}

// reachedByStranger maps a port on router A by sending to coord:3480,
// then reports whether a datagram from coord's other port 3481 (a sender
// A never talked to) comes back in through A's NAT to that port.
func reachedByStranger(t *testing.T, s *Standard) bool {
	t.Helper()
	a, err := s.RouterA.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	l, err := s.Coord.ListenPacket("udp4", fmt.Sprintf("%s:3480", CoordIP))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	stranger, err := s.Coord.ListenPacket("udp4", fmt.Sprintf("%s:3481", CoordIP))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	buf := make([]byte, 64)
	var mapped net.Addr
	for try := 0; try < 5 && mapped == nil; try++ {
		a.WriteTo([]byte("map"), &net.UDPAddr{IP: net.ParseIP(CoordIP), Port: 3480})
		l.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
		if _, src, err := l.ReadFrom(buf); err == nil {
			mapped = src
		}
	}
	if mapped == nil {
		t.Fatal("no mapping: the probe did not arrive")
	}
	for try := 0; try < 3; try++ {
		stranger.WriteTo([]byte("hello"), mapped)
		a.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, _, err := a.ReadFrom(buf); err == nil {
			return true
		}
	}
	return false
}

func TestNATKinds(t *testing.T) {
	SkipUnlessRoot(t)
	t.Parallel()
	for _, c := range []struct {
		kind       NATKind
		samePort   bool // endpoint-independent mapping
		udpBlocked bool
		anySender  bool // endpoint-independent filtering
	}{
		{NATNone, true, false, true},
		{NATEasy, true, false, true},
		{NATHard, false, false, false},
		{NATCGNAT, true, false, false},
		{NATRestricted, true, false, false},
		{NATRestrictedReject, true, false, false},
		{NATRestrictedAccept, true, false, false},
		{NATNoUDP, false, true, false},
	} {
		t.Run(string(c.kind)+"nat", func(t *testing.T) {
			t.Parallel()
			s := NewStandard(t, StandardOptions{NATA: c.kind})
			src := udpSources(t, s, s.RouterA, 3478, 3479)
			if c.udpBlocked {
				for _, a := range src {
					if a.IsValid() {
						t.Fatalf("UDP passed the no-UDP firewall, seen from %v", a)
					}
				}
				checkTCP443(t, s)
				return
			}
			for _, a := range src {
				if !a.IsValid() {
					t.Fatalf("UDP did not arrive through %q NAT", c.kind)
				}
				// The source is always the public address, never the
				// router's private WAN address behind the box.
				if a.Addr().String() != WANA {
					t.Errorf("source %v, want the public %s (router's own is %s)", a, WANA, s.RouterWANIP(s.RouterA))
				}
			}
			if same := src[0].Port() == src[1].Port(); same != c.samePort {
				t.Errorf("ports per destination %v: same=%v, want %v", src, same, c.samePort)
			}
			if got := reachedByStranger(t, s); got != c.anySender {
				t.Errorf("a sender the router never talked to reached its mapped port: %v, want %v", got, c.anySender)
			}
			// A LAN host behind the router reaches the internet too, but
			// only through the router's own masquerading (which the
			// agent does not set up here): its datagrams are not
			// rewritten by the testbed, so they are not answered.
			if n, _ := s.A1.Ping(context.Background(), CoordIP, 1, 300*time.Millisecond); c.kind == NATNone && n != 0 {
				t.Errorf("a1 reached coord without any NAT on router-a")
			}
		})
	}
}

// checkTCP443 shows the firewall still lets TCP 443 through but not 80.
func checkTCP443(t *testing.T, s *Standard) {
	for _, c := range []struct {
		port int
		ok   bool
	}{{443, true}, {80, false}} {
		l, err := s.Coord.Listen("tcp4", fmt.Sprintf("%s:%d", CoordIP, c.port))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if conn, err := l.Accept(); err == nil {
				conn.Write([]byte("hi"))
				conn.Close()
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := s.RouterA.DialContext(ctx, "tcp4", fmt.Sprintf("%s:%d", CoordIP, c.port))
		cancel()
		if (err == nil) != c.ok {
			t.Errorf("TCP %d through the firewall: err=%v, want ok=%v", c.port, err, c.ok)
		}
		if conn != nil {
			conn.Close()
		}
		l.Close()
	}
}

// TestCloseCleansUp: no namespace or process survives Close.
func TestCloseCleansUp(t *testing.T) {
	SkipUnlessRoot(t)
	t.Parallel()
	w, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := w.AddHost("h1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddHost("h2"); err != nil {
		t.Fatal(err)
	}
	p, err := h.Start("sleeper", "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Namespaces()) != 2 {
		t.Fatalf("namespaces %v, want 2", w.Namespaces())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if ns := w.Namespaces(); len(ns) != 0 {
		t.Errorf("left behind: %v", ns)
	}
	if p.Running() || syscall.Kill(p.Pid(), 0) == nil {
		t.Errorf("process %d still running", p.Pid())
	}
	if w.keep {
		// LANMESH_KEEP_LOGS asks for the directory to stay.
		if _, err := os.Stat(w.Dir); err != nil {
			t.Errorf("LANMESH_KEEP_LOGS is set but the scratch dir is gone: %v", err)
		}
		os.RemoveAll(w.Dir)
	} else if _, err := os.Stat(w.Dir); !os.IsNotExist(err) {
		t.Errorf("scratch dir %s left behind", w.Dir)
	}
}

// TestSweep: a namespace named for a dead pid is removed by Open; one of
// a live pid (a parallel run) is left alone.
func TestSweep(t *testing.T) {
	SkipUnlessRoot(t)
	dead := 1 << 22 // above pid_max's default range
	for syscall.Kill(dead, 0) == nil {
		dead--
	}
	stale := fmt.Sprintf("%s%dx1-old", namePrefix, dead)
	live := fmt.Sprintf("%s%dx999-keep", namePrefix, os.Getpid())
	for _, ns := range []string{stale, live} {
		if b, err := runIP("netns", "add", ns); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
	}
	t.Cleanup(func() { deleteNetns(stale); deleteNetns(live) })
	New(t)
	if _, err := os.Stat(filepath.Join(netnsDir, stale)); !os.IsNotExist(err) {
		t.Errorf("stale namespace %s survived the sweep", stale)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, live)); err != nil {
		t.Errorf("live run's namespace %s was swept: %v", live, err)
	}
}

func TestProcLogsAndRun(t *testing.T) {
	SkipUnlessRoot(t)
	t.Parallel()
	w := New(t)
	h, err := w.AddHost("h")
	if err != nil {
		t.Fatal(err)
	}
	p, err := h.Start("echo", "sh", "-c", "echo out; echo err >&2")
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if log := p.Log(); !strings.Contains(log, "out") || !strings.Contains(log, "err") {
		t.Errorf("log %q lacks stdout/stderr", log)
	}
	r, err := h.Run(context.Background(), "ip", "-o", "link")
	if err != nil || !strings.Contains(r.Stdout, "lo:") || strings.Contains(r.Stdout, "eth") {
		t.Errorf("ip link inside the namespace: %q %v", r.Stdout, err)
	}
	if _, err := h.Run(context.Background(), "false"); err == nil {
		t.Error("a failing command returned no error")
	}
	key := "lmk1.abcd1234.0123456789abcdef0123"
	if _, err := h.Run(context.Background(), "true", "--auth-key", key); err != nil {
		t.Fatal(err)
	}
	if hits, err := w.GrepLogs("0123456789abcdef0123"); err != nil || len(hits) != 0 {
		t.Errorf("commands.log holds an auth key secret: %v %v", hits, err)
	}
	// The S11 grep must be able to fail: a secret a process prints is found.
	if _, err := h.Run(context.Background(), "echo", "SEKRET-"+"xyz"); err != nil {
		t.Fatal(err)
	}
	if hits, _ := w.GrepLogs("SEKRET-xyz"); len(hits) != 1 {
		t.Errorf("GrepLogs missed a planted secret: %v", hits)
	}
}

func TestBadInput(t *testing.T) {
	for _, a := range []string{"10.0.0.1/24", "100.64.0.1/32", "198.18.0.1", "198.18.0.0/14", "junk"} {
		if checkAddr(a) == nil {
			t.Errorf("checkAddr(%q) accepted", a)
		}
	}
	for _, n := range []string{"", "abcdefghijklmnop", "a/b", "a b"} {
		if checkIfName(n) == nil {
			t.Errorf("checkIfName(%q) accepted", n)
		}
	}
	if _, err := natRuleset("bogus", "wan0", "lan0"); err == nil {
		t.Error("unknown NAT kind accepted")
	}
	for in, want := range map[string]int{
		"3 packets transmitted, 3 received, 0% packet loss": 3,
		"3 packets transmitted, 0 received, +3 errors":      0,
		"": 0,
	} {
		if got := parsePingReceived(in); got != want {
			t.Errorf("parsePingReceived(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestRestrictedInput shows what the three port-restricted kinds do with
// an unsolicited datagram to the box's public address, and the effect
// that matters for hole punching: on the accepting box, the conntrack
// entry the stranger's datagram left makes masquerade move the router's
// later datagram to that same stranger onto another port (the clash
// docs/nat-traversal.md describes).
func TestRestrictedInput(t *testing.T) {
	SkipUnlessRoot(t)
	t.Parallel()
	for _, c := range []struct {
		kind      NATKind
		icmp      bool // the stranger hears port unreachable
		portMoves bool // the router's datagram to the stranger leaves from another port
	}{
		{NATRestricted, false, false},
		{NATRestrictedReject, true, false},
		{NATRestrictedAccept, true, true},
	} {
		t.Run(string(c.kind), func(t *testing.T) {
			t.Parallel()
			s := NewStandard(t, StandardOptions{NATA: c.kind})
			const port = 40123
			listen := func(p int) net.PacketConn {
				l, err := s.Coord.ListenPacket("udp4", fmt.Sprintf("%s:%d", CoordIP, p))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				return l
			}
			// A connected socket hears an ICMP error as ECONNREFUSED on
			// its next read (to another port, so it leaves no entry in the
			// way of what follows).
			var probe *net.UDPConn
			if err := s.Coord.Do(func() error {
				var err error
				probe, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(CoordIP), Port: 3492},
					&net.UDPAddr{IP: net.ParseIP(WANA), Port: port + 1})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer probe.Close()
			probe.Write([]byte("unsolicited"))
			probe.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			_, err := probe.Read(make([]byte, 16))
			if refused := err != nil && strings.Contains(err.Error(), "refused"); refused != c.icmp {
				t.Errorf("unsolicited datagram to %s:%d: read error %v, want port unreachable=%v", WANA, port+1, err, c.icmp)
			}
			stranger, other := listen(3490), listen(3491)
			stranger.WriteTo([]byte("unsolicited"), &net.UDPAddr{IP: net.ParseIP(WANA), Port: port})
			time.Sleep(100 * time.Millisecond)
			a, err := s.RouterA.ListenPacket("udp4", fmt.Sprintf(":%d", port))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			buf := make([]byte, 64)
			srcPort := func(l net.PacketConn, dport int) int {
				a.WriteTo([]byte("hello"), &net.UDPAddr{IP: net.ParseIP(CoordIP), Port: dport})
				l.SetReadDeadline(time.Now().Add(time.Second))
				_, src, err := l.ReadFrom(buf)
				if err != nil {
					t.Fatalf("router-a -> coord:%d: %v", dport, err)
				}
				return src.(*net.UDPAddr).Port
			}
			// To an untouched destination the port is kept
			// (endpoint-independent mapping).
			if p := srcPort(other, 3491); p != port {
				t.Fatalf("to an untouched destination: source port %d, want %d", p, port)
			}
			if p := srcPort(stranger, 3490); (p != port) != c.portMoves {
				t.Errorf("router -> stranger seen from port %d: moved=%v, want %v", p, p != port, c.portMoves)
			}
		})
	}
}
