package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ServeTCP runs socat on h listening on TCP port (all addresses); every
// connection gets banner and a newline, so a client can tell it reached
// this very host. It waits until the port accepts (from h itself).
func (h *Host) ServeTCP(port int, banner string) (*Proc, error) {
	if err := checkBanner(banner); err != nil {
		return nil, err
	}
	p, err := h.Start(fmt.Sprintf("socat-tcp%d", port), "socat",
		fmt.Sprintf("TCP4-LISTEN:%d,reuseaddr,fork", port), "SYSTEM:echo "+banner)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var c net.Conn
		err := h.Do(func() error {
			var e error
			c, e = net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
			return e
		})
		if err == nil {
			c.Close()
			return p, nil
		}
		if !p.Running() || time.Now().After(deadline) {
			return nil, fmt.Errorf("testbed: socat on %s TCP %d not accepting: %v (log %s)", h.Name, port, err, p.LogPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ServeUDPEcho runs socat on h answering every UDP datagram to port with
// banner and a newline.
func (h *Host) ServeUDPEcho(port int, banner string) (*Proc, error) {
	if err := checkBanner(banner); err != nil {
		return nil, err
	}
	p, err := h.Start(fmt.Sprintf("socat-udp%d", port), "socat",
		fmt.Sprintf("UDP4-RECVFROM:%d,reuseaddr,fork", port), "SYSTEM:echo "+banner)
	if err != nil {
		return nil, err
	}
	time.Sleep(100 * time.Millisecond) // socat binds at once; no handshake to wait for
	if !p.Running() {
		return nil, fmt.Errorf("testbed: socat on %s UDP %d exited: %v", h.Name, port, p.Err())
	}
	return p, nil
}

func checkBanner(s string) error {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') }) >= 0 {
		return fmt.Errorf("testbed: banner %q: want [a-z0-9-]+ (it goes through a shell)", s)
	}
	return nil
}

// Outcome is how a connection attempt ended.
type Outcome string

const (
	Connected   Outcome = "connected"   // handshake done (and banner read when asked)
	TimedOut    Outcome = "timeout"     // no answer at all: what a drop looks like
	Refused     Outcome = "refused"     // a RST came back
	Unreachable Outcome = "unreachable" // an ICMP error or no route
	OtherError  Outcome = "error"
)

// ProbeResult is one TCP or UDP attempt.
type ProbeResult struct {
	Outcome Outcome
	Banner  string // what the server sent first, trimmed
	Took    time.Duration
	Err     error
}

func (r ProbeResult) String() string {
	s := string(r.Outcome)
	if r.Banner != "" {
		s += " banner=" + r.Banner
	}
	if r.Err != nil && r.Outcome != Connected {
		s += fmt.Sprintf(" (%v)", r.Err)
	}
	return s + fmt.Sprintf(" in %d ms", r.Took.Milliseconds())
}

// ProbeTCP connects from h to addr within timeout and reads the first
// line the server sends (the ServeTCP banner). It tells a silent drop
// (TimedOut) from a RST (Refused) and an ICMP error (Unreachable).
func (h *Host) ProbeTCP(addr string, timeout time.Duration) ProbeResult {
	start := time.Now()
	var c net.Conn
	err := h.Do(func() error {
		var e error
		c, e = net.DialTimeout("tcp4", addr, timeout)
		return e
	})
	r := ProbeResult{Took: time.Since(start), Err: err}
	if err != nil {
		r.Outcome = classify(err)
		return r
	}
	defer c.Close()
	r.Outcome = Connected
	c.SetReadDeadline(time.Now().Add(timeout))
	b, _ := io.ReadAll(io.LimitReader(c, 256))
	r.Banner = strings.TrimSpace(string(b))
	r.Took = time.Since(start)
	return r
}

// ProbeUDP sends a datagram from h to addr (again every udpResend) and
// waits up to timeout for an answer (the ServeUDPEcho banner).
func (h *Host) ProbeUDP(addr string, timeout time.Duration) ProbeResult {
	start := time.Now()
	var c net.Conn
	err := h.Do(func() error {
		var e error
		c, e = net.Dial("udp4", addr)
		return e
	})
	if err != nil {
		return ProbeResult{Outcome: classify(err), Err: err, Took: time.Since(start)}
	}
	defer c.Close()
	// UDP may lose a datagram (a busy host, a neighbour entry being
	// resolved): send again every udpResend until an answer or timeout.
	deadline := start.Add(timeout)
	buf := make([]byte, 256)
	for {
		if _, err := c.Write([]byte("probe\n")); err != nil {
			return ProbeResult{Outcome: classify(err), Err: err, Took: time.Since(start)}
		}
		rd := time.Now().Add(udpResend)
		if rd.After(deadline) {
			rd = deadline
		}
		c.SetReadDeadline(rd)
		n, err := c.Read(buf)
		if err == nil {
			return ProbeResult{Outcome: Connected, Banner: strings.TrimSpace(string(buf[:n])), Took: time.Since(start)}
		}
		if !time.Now().Before(deadline) || !errors.Is(err, os.ErrDeadlineExceeded) {
			return ProbeResult{Outcome: classify(err), Err: err, Took: time.Since(start)}
		}
	}
}

// udpResend is how often ProbeUDP sends its datagram again.
const udpResend = 250 * time.Millisecond

func classify(err error) Outcome {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return Unreachable
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return TimedOut
	}
	return OtherError
}

// Dnsmasq is a real dnsmasq serving DNS (no DHCP) on one address of a
// host, with extra config files included (e.g. the agent's forwarding
// lines).
type Dnsmasq struct {
	Proc   *Proc
	Listen string // IP it answers on, port 53
	Conf   string // the main config file the testbed wrote
}

// StartDnsmasq runs dnsmasq on h answering on listenIP:53 only. It has no
// upstream (no-resolv) and reads no /etc/hosts: it answers only what the
// included confFiles give it, like a LAN's router resolver with the WAN
// unplugged. The cache is dnsmasq's default, as on a router. It waits
// until dnsmasq answers a query.
func (h *Host) StartDnsmasq(ctx context.Context, listenIP string, confFiles ...string) (*Dnsmasq, error) {
	dir, err := h.w.StateDir("dnsmasq-" + h.Name)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# testbed: dnsmasq of %s\nport=53\nlisten-address=%s\nbind-interfaces\nno-resolv\nno-hosts\nno-poll\nlog-queries\nlog-facility=-\nuser=root\n", h.Name, listenIP)
	for _, f := range confFiles {
		fmt.Fprintf(&b, "conf-file=%s\n", f)
	}
	conf := filepath.Join(dir, "dnsmasq.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return nil, fmt.Errorf("testbed: dnsmasq config: %w", err)
	}
	// --pid-file without a value: no pid file, so parallel worlds do not
	// fight over /run/dnsmasq.pid.
	p, err := h.Start("dnsmasq-"+h.Name, "dnsmasq", "--keep-in-foreground", "--conf-file="+conf, "--pid-file")
	if err != nil {
		return nil, err
	}
	d := &Dnsmasq{Proc: p, Listen: listenIP, Conf: conf}
	ctx, cancel := ctxOrTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		// Any answer (REFUSED included) proves it serves.
		if _, err := h.Lookup(ctx, listenIP, "ready.testbed.invalid", "A"); err == nil {
			return d, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("testbed: dnsmasq on %s exited (%v):\n%s", h.Name, p.Err(), tail(p.Log(), 20))
		case <-ctx.Done():
			return nil, fmt.Errorf("testbed: dnsmasq on %s not answering on %s:53 (log %s)", h.Name, listenIP, p.LogPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Answer is what dig got: the status (NOERROR, NXDOMAIN, REFUSED,
// SERVFAIL...) and the addresses in the answer section.
type Answer struct {
	Status string
	Addrs  []string
	TTL    int // smallest TTL of the answer records; -1 when none
	Took   time.Duration
}

func (a Answer) String() string {
	return fmt.Sprintf("%s [%s] ttl %d in %d ms", a.Status, strings.Join(a.Addrs, " "), a.TTL, a.Took.Milliseconds())
}

// Lookup runs dig on h against server (an IP, or IP:port) for name
// (qtype A, AAAA or PTR).
// An error means dig got no answer at all; a negative answer is a nil
// error with Status NXDOMAIN (or whatever the server said).
func (h *Host) Lookup(ctx context.Context, server, name, qtype string) (Answer, error) {
	if _, err := os.Stat("/usr/bin/dig"); err != nil {
		return Answer{}, errors.New("testbed: dig is missing: run scripts/deps.sh (package bind9-dnsutils)")
	}
	args := []string{"dig", "+tries=1", "+time=1", "+noall", "+comments", "+answer"}
	if ap, err := netip.ParseAddrPort(server); err == nil {
		args = append(args, "-p", fmt.Sprint(ap.Port()), "@"+ap.Addr().String())
	} else {
		args = append(args, "@"+server)
	}
	start := time.Now()
	r, err := h.Run(ctx, append(args, name, qtype)...)
	a := Answer{Took: time.Since(start), TTL: -1}
	if err != nil {
		return a, fmt.Errorf("dig @%s %s %s on %s: %w", server, name, qtype, h.Name, err)
	}
	return parseDig(r.Stdout, qtype, a)
}

// parseDig reads the status from ";; ->>HEADER<<- opcode: QUERY, status:
// NOERROR, id: 1" and the data of qtype records from the answer lines.
func parseDig(out, qtype string, a Answer) (Answer, error) {
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "status: "); i >= 0 && strings.Contains(line, "HEADER") {
			st := line[i+len("status: "):]
			if j := strings.IndexByte(st, ','); j >= 0 {
				st = st[:j]
			}
			a.Status = strings.TrimSpace(st)
			continue
		}
		if strings.HasPrefix(line, ";") {
			continue
		}
		f := strings.Fields(line)
		// name ttl class type data
		if len(f) >= 5 && f[3] == qtype {
			a.Addrs = append(a.Addrs, f[4])
			if ttl, err := strconv.Atoi(f[1]); err == nil && (a.TTL < 0 || ttl < a.TTL) {
				a.TTL = ttl
			}
		}
	}
	if a.Status == "" {
		return a, fmt.Errorf("dig: no status line in its output %q", out)
	}
	return a, nil
}
