package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	agentdns "github.com/lanmesh/lanmesh/agent/dns"
)

// The names each server answers in the DNS benchmark: the agent a mesh
// node from its netmap snapshot, dnsmasq a local host record. Both are
// answered from memory, so the table compares the servers, not upstreams.
const (
	dnsMeshDomain = "mesh.internal"
	dnsMeshName   = "router-a." + dnsMeshDomain + "."
	dnsLocalName  = "nas.home.lan."
)

var (
	dnsMeshAddr  = netip.MustParseAddr("100.64.0.1")
	dnsLocalAddr = netip.MustParseAddr("198.19.1.10")
)

// DNSOptions configures RunDNS.
type DNSOptions struct {
	Reps     int           // interleaved repetitions per server; default 5
	Duration time.Duration // one load run; default 3s
	Workers  int           // concurrent clients, one query in flight each; default 16
	// Self is an executable that serves the agent's DNS when started with
	// ChildEnv=dns (lanmesh-bench itself), so the agent has a process of
	// its own as dnsmasq does. Empty serves it inside this process.
	Self string
	Log  *slog.Logger
}

// DNSServerResult is one server's measurements.
type DNSServerResult struct {
	Server string // "lanmesh agent" or "dnsmasq"
	Note   string // how it ran
	Query  string // the name asked
	QPS    Sample // one value per repetition
	Lost   int    // queries without a correct answer, over all runs
	Errs   []string
}

// DNSResult is one DNS benchmark run.
type DNSResult struct {
	Env      Env
	Reps     int
	Duration time.Duration
	Workers  int
	Servers  []DNSServerResult // agent first, then dnsmasq
}

// Failed names servers that failed a repetition or answered wrongly.
func (r *DNSResult) Failed() []string {
	var f []string
	for _, s := range r.Servers {
		if len(s.Errs) > 0 {
			f = append(f, fmt.Sprintf("%s: %s", s.Server, s.Errs[0]))
		}
	}
	return f
}

// dnsTarget is a running server and the question it must answer.
type dnsTarget struct {
	res   *DNSServerResult
	addr  netip.AddrPort
	qname string
	want  netip.Addr
}

// RunDNS measures queries per second answered by the lanmesh agent's DNS
// server for a mesh name and by dnsmasq for a local record, both on
// loopback, with the same Go load generator, in interleaved repetitions.
func RunDNS(ctx context.Context, opt DNSOptions) (*DNSResult, error) {
	if opt.Reps <= 0 {
		opt.Reps = 5
	}
	if opt.Duration <= 0 {
		opt.Duration = 3 * time.Second
	}
	if opt.Workers <= 0 {
		opt.Workers = 16
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	res := &DNSResult{Env: CurrentEnv(), Reps: opt.Reps, Duration: opt.Duration, Workers: opt.Workers,
		Servers: []DNSServerResult{{Server: "lanmesh agent", Query: dnsMeshName}, {Server: "dnsmasq", Query: dnsLocalName}}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	agentAddr, stopAgent, note, err := startAgentDNS(ctx, opt.Self)
	if err != nil {
		return res, fmt.Errorf("dns bench: agent: %w", err)
	}
	defer stopAgent()
	res.Servers[0].Note = note
	dmAddr, stopDM, note, err := startDnsmasq(ctx)
	if err != nil {
		return res, fmt.Errorf("dns bench: dnsmasq: %w", err)
	}
	defer stopDM()
	res.Servers[1].Note = note

	targets := []dnsTarget{
		{res: &res.Servers[0], addr: agentAddr, qname: dnsMeshName, want: dnsMeshAddr},
		{res: &res.Servers[1], addr: dmAddr, qname: dnsLocalName, want: dnsLocalAddr},
	}
	for _, t := range targets {
		// Warm-up: caches, goroutine pools, page faults; not counted.
		if _, _, err := loadDNS(ctx, t.addr, t.qname, t.want, opt.Workers, 300*time.Millisecond); err != nil {
			return res, fmt.Errorf("dns bench: %s warm-up: %w", t.res.Server, err)
		}
	}
	for rep := range opt.Reps {
		// Alternate the order, so neither server always runs on a
		// machine still busy with the other's tail.
		order := []int{0, 1}
		if rep%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			t := targets[i]
			qps, lost, err := loadDNS(ctx, t.addr, t.qname, t.want, opt.Workers, opt.Duration)
			t.res.Lost += lost
			if err != nil {
				t.res.Errs = append(t.res.Errs, fmt.Sprintf("rep %d: %v", rep+1, err))
				continue
			}
			t.res.QPS = append(t.res.QPS, qps)
			opt.Log.Info("bench: dns", "server", t.res.Server, "rep", rep+1, "qps", int(qps), "lost", lost)
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// loadDNS runs workers UDP clients against addr for d, each with one
// query in flight, and returns correct answers per second and the number
// of queries lost (timed out or answered wrongly). A wrong answer is an
// error: a fast server that answers the wrong thing measures nothing.
func loadDNS(ctx context.Context, addr netip.AddrPort, qname string, want netip.Addr, workers int, d time.Duration) (float64, int, error) {
	type tally struct {
		ok, lost int
		err      error
	}
	tallies := make([]tally, workers)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[w]
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
			if err != nil {
				t.err = err
				return
			}
			defer c.Close()
			co := &mdns.Conn{Conn: c}
			q := new(mdns.Msg).SetQuestion(qname, mdns.TypeA)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				q.Id = mdns.Id()
				if err := co.WriteMsg(q); err != nil {
					t.err = fmt.Errorf("send: %w", err)
					return
				}
				c.SetReadDeadline(time.Now().Add(time.Second))
				r, err := readReply(co, q.Id)
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.lost++
						continue
					}
					t.err = err
					return
				}
				if err := checkA(r, want); err != nil {
					t.lost++
					t.err = fmt.Errorf("%s: %w", qname, err)
					return
				}
				t.ok++
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	ok, lost := 0, 0
	var errs []error
	for _, t := range tallies {
		ok += t.ok
		lost += t.lost
		if t.err != nil {
			errs = append(errs, t.err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, lost, err
	}
	if ok == 0 {
		return 0, lost, fmt.Errorf("no answers from %s in %v", addr, d)
	}
	return float64(ok) / el.Seconds(), lost, nil
}

// readReply reads until the reply to id; a late reply to an earlier,
// timed-out query is skipped.
func readReply(co *mdns.Conn, id uint16) (*mdns.Msg, error) {
	for {
		r, err := co.ReadMsg()
		if err != nil {
			return nil, err
		}
		if r.Id == id {
			return r, nil
		}
	}
}

// checkA wants a successful answer with exactly the address want.
func checkA(r *mdns.Msg, want netip.Addr) error {
	if r.Rcode != mdns.RcodeSuccess {
		return fmt.Errorf("rcode %s", mdns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			got, _ := netip.AddrFromSlice(a.A.To4())
			if got == want {
				return nil
			}
			return fmt.Errorf("answer %s, want %s", got, want)
		}
	}
	return fmt.Errorf("no A record in the answer (%d records)", len(r.Answer))
}

// agentDNSConfig is the snapshot the agent serves: a small mesh, as a
// netmap would give it.
func agentDNSConfig() agentdns.Config {
	c := agentdns.Config{Domain: dnsMeshDomain, AllowedClients: agentdns.DefaultAllowedClients(netip.Prefix{})}
	for i := range 50 {
		name := fmt.Sprintf("node%d", i)
		if i == 0 {
			name = "router-a"
		}
		c.Records = append(c.Records, agentdns.Record{Name: name,
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{100, 64, 0, byte(i + 1)})}})
	}
	return c
}

// serveAgentDNS starts the agent's DNS server on a loopback port.
func serveAgentDNS() (*agentdns.Server, netip.AddrPort, error) {
	s := agentdns.New(agentdns.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := s.SetConfig(agentDNSConfig()); err != nil {
		return nil, netip.AddrPort{}, err
	}
	if err := s.Listen(netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		return nil, netip.AddrPort{}, err
	}
	return s, s.Addrs()[0], nil
}

// startAgentDNS runs the agent's DNS server in a child process of its own
// (self with ChildEnv=dns), or in this process when self is empty.
func startAgentDNS(ctx context.Context, self string) (netip.AddrPort, func(), string, error) {
	if self == "" {
		s, addr, err := serveAgentDNS()
		if err != nil {
			return addr, nil, "", err
		}
		return addr, func() { s.Close() }, "agent/dns in the load generator's process", nil
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), ChildEnv+"=dns")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return netip.AddrPort{}, nil, "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return netip.AddrPort{}, nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return netip.AddrPort{}, nil, "", fmt.Errorf("start %s: %w", self, err)
	}
	stop := func() {
		stdin.Close() // the child exits when its stdin closes
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		return netip.AddrPort{}, nil, "", fmt.Errorf("child did not report its address: %w", err)
	}
	addr, err := netip.ParseAddrPort(strings.TrimSpace(line))
	if err != nil {
		stop()
		return addr, nil, "", fmt.Errorf("child address %q: %w", strings.TrimSpace(line), err)
	}
	return addr, stop, "agent/dns (the agent's server) in a process of its own, " + dnsMeshDomain + " with 50 nodes", nil
}

// serveDNSChild is the child side of startAgentDNS: serve, print the
// address, and stop when the parent closes stdin.
func serveDNSChild(stdin io.Reader, stdout io.Writer) error {
	s, addr, err := serveAgentDNS()
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := fmt.Fprintln(stdout, addr); err != nil {
		return err
	}
	io.Copy(io.Discard, stdin)
	return nil
}

// startDnsmasq runs dnsmasq on a free loopback port with one host record
// and no upstreams, hosts file or config file of the machine.
func startDnsmasq(ctx context.Context) (netip.AddrPort, func(), string, error) {
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		return netip.AddrPort{}, nil, "", fmt.Errorf("dnsmasq not installed (scripts/deps.sh installs it): %w", err)
	}
	version := "dnsmasq"
	if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
		version, _, _ = strings.Cut(string(out), "\n")
		version, _, _ = strings.Cut(version, "Copyright")
		version = strings.TrimSpace(version)
	}
	var lastErr error
	for try := 0; try < 5; try++ {
		port, err := freeLoopbackPort()
		if err != nil {
			return netip.AddrPort{}, nil, "", err
		}
		addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
		var errBuf strings.Builder
		cmd := exec.CommandContext(ctx, bin, "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file",
			"--no-resolv", "--no-hosts", "--no-poll", "--bind-interfaces", "--listen-address=127.0.0.1",
			fmt.Sprintf("--port=%d", port), "--host-record="+strings.TrimSuffix(dnsLocalName, ".")+","+dnsLocalAddr.String(),
			"--log-facility=-")
		cmd.Stderr = &limitedWriter{b: &errBuf, n: 4096}
		if err := cmd.Start(); err != nil {
			return addr, nil, "", fmt.Errorf("start dnsmasq: %w", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		if err := waitDNS(ctx, addr, dnsLocalName, dnsLocalAddr, exited); err != nil {
			stop()
			lastErr = fmt.Errorf("dnsmasq on %s: %w: %s", addr, err, strings.TrimSpace(errBuf.String()))
			continue
		}
		return addr, stop, version + ", --host-record, in a process of its own", nil
	}
	return netip.AddrPort{}, nil, "", lastErr
}

// waitDNS polls until addr answers qname correctly, the process exits or
// 5 s pass.
func waitDNS(ctx context.Context, addr netip.AddrPort, qname string, want netip.Addr, exited <-chan struct{}) error {
	c := &mdns.Client{Timeout: 200 * time.Millisecond}
	q := new(mdns.Msg).SetQuestion(qname, mdns.TypeA)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, _, err := c.ExchangeContext(ctx, q, addr.String())
		if err == nil {
			err = checkA(r, want)
			if err == nil {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within 5s: %w", err)
		}
	}
}

// freeLoopbackPort finds a port free for both UDP and TCP on 127.0.0.1.
func freeLoopbackPort() (uint16, error) {
	for range 20 {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		pc.Close()
		if err == nil {
			ln.Close()
			return uint16(port), nil
		}
	}
	return 0, errors.New("no free loopback port for UDP and TCP")
}

// limitedWriter keeps the first n bytes (a child's error output).
type limitedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
	n  int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.n - w.b.Len(); room > 0 {
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// WriteDNSReport writes bench/results/dns.md.
func WriteDNSReport(w io.Writer, r *DNSResult) error {
	var b strings.Builder
	if err := r.Env.WriteHeader(&b, "DNS: queries per second, lanmesh agent vs dnsmasq"); err != nil {
		return err
	}
	fmt.Fprintf(&b, "One Go load generator (miekg/dns, %d UDP clients with one query in flight\n"+
		"each, %v per run) asks each server for a name it answers from memory: the\n"+
		"agent a mesh name from its netmap snapshot, dnsmasq a local host record.\n"+
		"Both listen on 127.0.0.1 of this machine; %d interleaved repetitions, order\n"+
		"alternating. Every answer is checked; \"lost\" counts timeouts (1 s) and\n"+
		"wrong answers. Server and load generator share the machine's %d CPUs, so\n"+
		"these are relative numbers, not a router's capacity.\n\n",
		r.Workers, r.Duration, r.Reps, r.Env.CPUs)
	t := Table{Header: []string{"server", "query", "queries/s (median)", "min", "max", "runs", "lost", "vs dnsmasq", "setup"}}
	var dm float64
	for _, s := range r.Servers {
		if s.Server == "dnsmasq" {
			dm = s.QPS.Median()
		}
	}
	for _, s := range r.Servers {
		t.Add(s.Server, "`"+s.Query+" A`", qps(s.QPS.Median()), qps(s.QPS.Min()), qps(s.QPS.Max()),
			fmt.Sprintf("%d/%d", len(s.QPS), r.Reps), fmt.Sprint(s.Lost), Ratio(s.QPS.Median(), dm), s.Note)
	}
	if _, err := t.WriteTo(&b); err != nil {
		return err
	}
	for _, s := range r.Servers {
		for _, e := range s.Errs {
			fmt.Fprintf(&b, "\n- %s failed: %s", s.Server, e)
		}
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("write dns report: %w", err)
	}
	return nil
}

func qps(v float64) string {
	if v <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", v)
}

func passFail(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**MISSED**"
}

// msf is a duration in milliseconds, for tables.
func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
