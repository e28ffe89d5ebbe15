package netcheck

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lanmesh/lanmesh/internal/testbed"
	"github.com/lanmesh/lanmesh/internal/wire"
)

var nsSeq atomic.Int32

// natWorld builds client -- NAT box -- "internet" in three namespaces
// (names lmnc-<pid>-<n>-*, deleted in t.Cleanup, addresses from
// 198.18.0.0/15 only) and returns the client and server namespaces.
func natWorld(t *testing.T, masq string) (client, server string) {
	prefix := fmt.Sprintf("lmnc-%d-%d-", os.Getpid(), nsSeq.Add(1))
	cli, nat, srv := prefix+"cli", prefix+"nat", prefix+"srv"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{cli, nat, srv} {
		run("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	// veth pairs are created straight inside the namespaces.
	run("ip", "link", "add", "c0", "netns", cli, "type", "veth", "peer", "name", "n0", "netns", nat)
	run("ip", "link", "add", "n1", "netns", nat, "type", "veth", "peer", "name", "s0", "netns", srv)
	run("ip", "-n", cli, "addr", "add", "198.18.1.2/24", "dev", "c0")
	run("ip", "-n", nat, "addr", "add", "198.18.1.1/24", "dev", "n0")
	run("ip", "-n", nat, "addr", "add", "198.18.2.1/24", "dev", "n1")
	run("ip", "-n", srv, "addr", "add", "198.18.2.2/24", "dev", "s0")
	run("ip", "-n", srv, "addr", "add", "198.18.2.3/24", "dev", "s0")
	for _, l := range [][2]string{{cli, "c0"}, {nat, "n0"}, {nat, "n1"}, {srv, "s0"}} {
		run("ip", "-n", l[0], "link", "set", l[1], "up")
	}
	run("ip", "-n", cli, "route", "add", "default", "via", "198.18.1.1")
	run("ip", "netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	rules := fmt.Sprintf("table ip lmnc {\n chain post {\n  type nat hook postrouting priority srcnat;\n  oifname \"n1\" %s\n }\n}\n", masq)
	nft := exec.Command("ip", "netns", "exec", nat, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", nat, err, out)
	}
	return cli, srv
}

// listenIn opens a UDP socket inside namespace ns (on a thread that is
// thrown away afterwards, so the switch never leaks).
func listenIn(t *testing.T, ns, addr string) net.PacketConn {
	t.Helper()
	type res struct {
		pc  net.PacketConn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		pc, err := net.ListenPacket("udp4", addr)
		ch <- res{pc, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.pc.Close() })
	return r.pc
}

// A symmetric NAT (masquerade fully-random) gives each destination its own
// mapping: netcheck must call it hard. A plain masquerade keeps the port,
// so the same socket maps the same way to both servers: not hard.
func TestNATMappingVariesByDest(t *testing.T) {
	testbed.SkipUnlessRoot(t)
	for _, tc := range []struct {
		masq string
		want bool
	}{
		{"masquerade fully-random", true},
		{"masquerade", false},
	} {
		t.Run(tc.masq, func(t *testing.T) {
			cli, srv := natWorld(t, tc.masq)
			s1 := serveSTUN(t, listenIn(t, srv, "198.18.2.2:3478"))
			s2 := serveSTUN(t, listenIn(t, srv, "198.18.2.3:3479"))
			c, err := New(Config{Conn: listenIn(t, cli, "198.18.1.2:41641")})
			if err != nil {
				t.Fatal(err)
			}
			dm := &wire.DERPMap{Regions: []wire.DERPRegion{region(1, stunNode(s1)), region(2, stunNode(s2))}}
			r, err := c.Run(context.Background(), dm)
			if err != nil {
				t.Fatal(err)
			}
			if !r.UDP || r.MappingVariesByDest == nil {
				t.Fatalf("report %+v", r)
			}
			if *r.MappingVariesByDest != tc.want {
				t.Fatalf("mapping varies = %v, want %v (mapped %v)", *r.MappingVariesByDest, tc.want, r.GlobalV4)
			}
			for _, m := range r.GlobalV4 {
				if m.Addr().String() != "198.18.2.1" {
					t.Fatalf("mapped %v: not the NAT's outside address", m)
				}
			}
			t.Logf("mapped %v", r.GlobalV4)
		})
	}
}
