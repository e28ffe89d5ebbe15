package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
	"github.com/lanmesh/lanmesh/internal/vmtest"
)

// VMOptions configure RunVM and RunRouter.
type VMOptions struct {
	BinDir   string        // make build's bin (host builds, <os>_<arch>/ router builds, packages/)
	Reps     int           // transfers per data plane
	Duration time.Duration // per transfer
	Arches   []vmtest.Arch // RunVM: guests, in order (default amd64 then mipsle)
	Log      *slog.Logger
}

func (o *VMOptions) check(what string) error {
	if o.Reps <= 0 || o.Duration < time.Second {
		return fmt.Errorf("%s: reps %d must be positive and the transfer duration %v at least 1s", what, o.Reps, o.Duration)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s: needs root (testbed namespaces, tap devices)", what)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.BinDir != "" {
		// testbed and vmtest find the builds here instead of building.
		os.Setenv("LANMESH_BIN_DIR", o.BinDir)
	}
	return nil
}

// vmModules are what the agent needs from the Debian guest kernels,
// which build all of it as modules: TUN for the userspace backend and
// nftables with the expressions and chain types of its firewall.
var vmModules = []string{"tun", "nf_tables", "nft_ct", "nft_masq", "nft_chain_nat"}

// idleSettle is how long a joined agent runs before its idle memory is
// read: long enough for the first netmap, handshake and disco rounds.
const idleSettle = 15 * time.Second

// vmRig is the testbed world the guests join: the standard topology with
// coord and, on router B, the far end of the mesh (a userspace lanmesh
// agent on the host, which is not the bottleneck: it runs natively,
// the guest emulated). Each guest sits behind its own easy-NAT box on
// the simulated internet, as a home router does.
type vmRig struct {
	w     *testbed.World
	s     *testbed.Standard
	coord *testbed.Coord
	peer  *testbed.Agent // router-b
	log   *slog.Logger
}

func newVMRig(ctx context.Context, log *slog.Logger) (*vmRig, error) {
	w, err := testbed.Open(testbed.Options{})
	if err != nil {
		return nil, err
	}
	r := &vmRig{w: w, log: log}
	ok := false
	defer func() {
		if !ok {
			w.KeepLogs()
			w.Close()
		}
	}()
	if r.s, err = testbed.BuildStandard(w, testbed.StandardOptions{}); err != nil {
		return nil, fmt.Errorf("standard topology: %w", err)
	}
	if r.coord, err = testbed.StartCoord(ctx, r.s.Coord, r.s.CoordAddr()); err != nil {
		return nil, fmt.Errorf("coord: %w", err)
	}
	k, err := r.coord.CreateKey(ctx)
	if err != nil {
		return nil, err
	}
	if r.peer, err = testbed.StartAgent(ctx, r.s.RouterB, "router-b", "--backend", "userspace"); err != nil {
		return nil, fmt.Errorf("router-b agent: %w", err)
	}
	if _, err := r.peer.Up(ctx, r.coord, k); err != nil {
		return nil, fmt.Errorf("router-b up: %w", err)
	}
	log.Info("bench: vm: world up", "world", w.Prefix, "logs", w.LogDir)
	ok = true
	return r, nil
}

func (r *vmRig) close() { r.w.Close() }

// vmSite is a NAT box on the internet with a tap for one guest: the
// guest is .2 on the tap's /24, the NAT box .1.
type vmSite struct {
	nat            *testbed.Host
	gw, guest, tap string
}

func (r *vmRig) addSite(name string, n int) (*vmSite, error) {
	nat, err := r.s.AddNATBox(name, testbed.NATEasy)
	if err != nil {
		return nil, err
	}
	wan := fmt.Sprintf("198.18.3.%d", 10+n)
	if err := r.s.Internet.Attach(nat, "wan0", wan+"/17"); err != nil {
		return nil, err
	}
	if err := nat.AddRoute("default", testbed.InternetGW); err != nil {
		return nil, err
	}
	site := &vmSite{nat: nat, gw: fmt.Sprintf("198.19.%d.1", 110+n), guest: fmt.Sprintf("198.19.%d.2", 110+n), tap: "lan0"}
	if err := nat.AddTap(site.tap, site.gw+"/24"); err != nil {
		return nil, err
	}
	return site, nil
}

func (site *vmSite) netUp(ctx context.Context, vm *vmtest.VM) error {
	_, err := vm.Run(ctx, fmt.Sprintf("ip addr add %s/24 dev eth0 && ip link set eth0 up && ip route add default via %s && ping -c 1 -W 10 %s >/dev/null || ping -c 3 -W 10 %s",
		site.guest, site.gw, site.gw, site.gw))
	return err
}

// guestProc is a long-running process in a guest, started in its own
// session with its pid in a file.
type guestProc struct {
	vm   *vmtest.VM
	name string
	pid  int
}

func startGuest(ctx context.Context, vm *vmtest.VM, name, cmdline string) (*guestProc, error) {
	pidFile := "/run/" + name + ".pid"
	script := fmt.Sprintf("rm -f %[1]s; setsid sh -c 'echo $$ >%[1]s; exec %[2]s' </dev/null >/tmp/%[3]s.log 2>&1 &\n"+
		"i=0; while [ ! -s %[1]s ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; cat %[1]s", pidFile, cmdline, name)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := vm.Run(cctx, script)
	if err != nil {
		return nil, fmt.Errorf("start %s in the guest: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return nil, fmt.Errorf("start %s in the guest: pid %q", name, out)
	}
	return &guestProc{vm: vm, name: name, pid: pid}, nil
}

// memory reads VmRSS and VmHWM of the process in the guest.
func (p *guestProc) memory(ctx context.Context) (rss, hwm int64, err error) {
	out, rc, err := p.vm.Exec(ctx, fmt.Sprintf("cat /proc/%d/status", p.pid))
	if err != nil {
		return 0, 0, err
	}
	if rc != 0 {
		return 0, 0, fmt.Errorf("%s (pid %d) is gone from the guest; its log:\n%s", p.name, p.pid, p.logTail(ctx))
	}
	return parseRSS([]byte(out))
}

// resetPeak makes VmHWM the current RSS (clear_refs 5), so the next
// read is the peak since now.
func (p *guestProc) resetPeak(ctx context.Context) error {
	_, err := p.vm.Run(ctx, fmt.Sprintf("echo 5 >/proc/%d/clear_refs", p.pid))
	return err
}

func (p *guestProc) logTail(ctx context.Context) string {
	out, _, _ := p.vm.Exec(ctx, fmt.Sprintf("tail -n 40 /tmp/%s.log", p.name))
	return out
}

// stop sends SIGTERM and waits up to 30 s for the process to exit.
func (p *guestProc) stop(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_, err := p.vm.Run(cctx, fmt.Sprintf("kill %[1]d; i=0; while [ -d /proc/%[1]d ] && [ $i -lt 120 ]; do sleep 0.5; i=$((i+1)); done; [ ! -d /proc/%[1]d ]", p.pid))
	if err != nil {
		return fmt.Errorf("stop %s in the guest: %w", p.name, err)
	}
	return nil
}

// guestStatus runs `lanmesh status --json` in the guest.
func guestStatus(ctx context.Context, vm *vmtest.VM, cli, sock string) (*testbed.Status, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, rc, err := vm.Exec(cctx, cli+" --socket "+sock+" status --json")
	if err != nil {
		return nil, err
	}
	if rc != 0 {
		return nil, fmt.Errorf("status exited %d: %s", rc, strings.TrimSpace(out))
	}
	return testbed.ParseStatus([]byte(out))
}

// waitGuestStatus polls the guest agent's status until ok accepts it.
func waitGuestStatus(ctx context.Context, vm *vmtest.VM, cli, sock, what string, limit time.Duration, ok func(*testbed.Status) bool) (*testbed.Status, error) {
	deadline := time.Now().Add(limit)
	var last error
	for {
		st, err := guestStatus(ctx, vm, cli, sock)
		if err == nil && ok(st) {
			return st, nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("state %s, peers %d", st.BackendState, len(st.Peers))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("guest agent: no %s after %v: %v", what, limit, last)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// sinkPort is the TCP port of the transfer sink on the far end.
const sinkPort = 5301

// transfer sends from the guest to dst (a tunnel address of sinkHost)
// for d: busybox nc reading /dev/zero in the guest, a Go sink on the far
// end that counts what arrives. The rate is measured at the receiver,
// from its first byte to d later. The guest process p's VmRSS is sampled
// halfway and its VmHWM read after (reset before); p nil measures none.
func transfer(ctx context.Context, vm *vmtest.VM, p *guestProc, sinkHost *testbed.Host, dst string, d time.Duration) (bps float64, rss, hwm int64, err error) {
	ln, err := sinkHost.Listen("tcp", net.JoinHostPort(dst, strconv.Itoa(sinkPort)))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("sink on %s: %w", sinkHost.Name, err)
	}
	defer ln.Close()
	if p != nil {
		if err := p.resetPeak(ctx); err != nil {
			return 0, 0, 0, err
		}
	}
	// The guest stops nc itself a little after the sink's window, so a
	// starved guest need not act on a kill.
	secs := int((d + 15*time.Second).Seconds())
	if _, err := vm.Run(ctx, fmt.Sprintf("setsid sh -c 'timeout %d nc %s %d </dev/zero >/dev/null' </dev/null >/tmp/nc.log 2>&1 &", secs, dst, sinkPort)); err != nil {
		return 0, 0, 0, err
	}
	type res struct {
		bps  float64
		conn net.Conn
		err  error
	}
	done := make(chan res, 1)
	go func() {
		b, c, e := sinkOnce(ln, d, 60*time.Second)
		done <- res{b, c, e}
	}()
	// Halfway through (the connection takes a moment under TCG).
	select {
	case r := <-done:
		return 0, 0, 0, fmt.Errorf("transfer ended early: %v", r.err)
	case <-time.After(d/2 + time.Second):
	}
	if p != nil {
		if rss, _, err = p.memory(ctx); err != nil {
			return 0, 0, 0, err
		}
	}
	r := <-done
	if r.conn != nil {
		defer r.conn.Close()
	}
	if r.err != nil {
		log, _, _ := vm.Exec(ctx, "cat /tmp/nc.log")
		return 0, 0, 0, fmt.Errorf("%w (guest nc: %s)", r.err, strings.TrimSpace(log))
	}
	if p != nil {
		if _, hwm, err = p.memory(ctx); err != nil {
			return 0, 0, 0, err
		}
	}
	// The sink has its window and reads no more, so the sender is held
	// by a closed TCP window: stop it, and wait for it so runs never
	// overlap. Only then the sink closes (a close with unread data
	// resets the connection while the guest still sends at full rate,
	// which left a TCG guest unresponsive for minutes).
	if err := stopGuestNC(ctx, vm); err != nil {
		return 0, 0, 0, err
	}
	return r.bps, rss, hwm, nil
}

func stopGuestNC(ctx context.Context, vm *vmtest.VM) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := vm.Run(cctx, "killall -q nc; i=0; while pidof nc >/dev/null; do i=$((i+1)); [ $i -ge 100 ] && exit 1; sleep 0.5; done; true"); err != nil {
		return fmt.Errorf("guest nc still running after kill: %w", err)
	}
	return nil
}

// sinkOnce accepts one connection on ln (waiting at most accept) and
// reads from it for d after its first byte; it returns the bit rate of
// what arrived in that window and the connection, open and no longer
// read, for the caller to close once the sender is stopped.
func sinkOnce(ln net.Listener, d, accept time.Duration) (float64, net.Conn, error) {
	if tl, ok := ln.(*net.TCPListener); ok {
		_ = tl.SetDeadline(time.Now().Add(accept))
	}
	c, err := ln.Accept()
	if err != nil {
		return 0, nil, fmt.Errorf("sink: no connection: %w", err)
	}
	bps, err := sinkRead(c, d, accept)
	if err != nil {
		c.Close()
		return 0, nil, err
	}
	return bps, c, nil
}

func sinkRead(c net.Conn, d, accept time.Duration) (float64, error) {
	buf := make([]byte, 256<<10)
	_ = c.SetReadDeadline(time.Now().Add(accept))
	if _, err := c.Read(buf); err != nil {
		return 0, fmt.Errorf("sink: no data: %w", err)
	}
	t0 := time.Now()
	_ = c.SetReadDeadline(t0.Add(d))
	var n int64
	last := t0
	for {
		k, err := c.Read(buf)
		if k > 0 {
			n += int64(k)
			last = time.Now()
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			return 0, fmt.Errorf("sink: after %d bytes: %w", n, err)
		}
	}
	el := last.Sub(t0).Seconds()
	if n == 0 || el <= 0 {
		return 0, errors.New("sink: nothing arrived after the first read")
	}
	return float64(n) * 8 / el, nil
}

// guestPing pings dst from the guest until one reply comes (up to tries).
func guestPing(ctx context.Context, vm *vmtest.VM, dst string, tries int) error {
	cctx, cancel := context.WithTimeout(ctx, time.Duration(tries)*10*time.Second)
	defer cancel()
	_, err := vm.Run(cctx, fmt.Sprintf("i=0; until ping -c 1 -W 5 %[1]s >/dev/null; do i=$((i+1)); [ $i -ge %[2]d ] && exit 1; sleep 1; done", dst, tries))
	if err != nil {
		return fmt.Errorf("guest cannot ping %s: %w", dst, err)
	}
	return nil
}
