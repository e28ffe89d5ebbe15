package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/server"
	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/tlscert"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Options configures a run.
type Options struct {
	Nodes int // registered nodes, each with one open map stream
	Users int // nodes are spread over this many users; default 10
	// Logf, if set, reports progress.
	Logf func(format string, args ...any)
	// Timeout bounds the wait for deltas; default 60s.
	Timeout time.Duration
}

// Result is what a run measured.
type Result struct {
	Nodes    int
	Users    int
	Setup    time.Duration // register, open and settle all streams
	Affected int           // streams that got the policy delta
	// Latency is from sending "policy set" to the last affected stream's
	// delta; P50 is the median stream.
	Latency, P50 time.Duration
	// CPU is the process's user+system CPU during the change (coord and
	// the lightweight clients share the process).
	CPU       time.Duration
	HeapInuse uint64 // after the change
	MaxRSS    uint64 // peak resident set of the process, bytes
}

func (r Result) String() string {
	return fmt.Sprintf("nodes=%d users=%d setup=%v affected=%d latency=%v p50=%v cpu=%v heap=%dMiB maxrss=%dMiB",
		r.Nodes, r.Users, r.Setup.Round(time.Millisecond), r.Affected, r.Latency.Round(time.Millisecond),
		r.P50.Round(time.Millisecond), r.CPU.Round(time.Millisecond), r.HeapInuse>>20, r.MaxRSS>>20)
}

// The policies: every user's devices reach each other; the change
// narrows the ports, so every node's filter changes but no peer list.
const (
	policyBefore = `{"acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]}]}`
	policyAfter  = `{"acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:22,80,443"]}]}`
)

// Run starts a coord, registers and connects opt.Nodes nodes, changes the
// policy and measures how long until every stream got its delta.
func Run(ctx context.Context, opt Options) (Result, error) {
	if opt.Nodes <= 0 {
		return Result{}, errors.New("loadtest: Nodes must be positive")
	}
	if opt.Users <= 0 {
		opt.Users = 10
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 60 * time.Second
	}
	logf := opt.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	raiseFDLimit(2*opt.Nodes + 1024)
	res := Result{Nodes: opt.Nodes, Users: opt.Users}
	dir, err := os.MkdirTemp("", "lanmesh-loadtest-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "coord.db"))
	if err != nil {
		return res, err
	}
	defer st.Close()
	cert, err := tlscert.LoadOrCreate(dir, "lanmesh-coord", "127.0.0.1")
	if err != nil {
		return res, err
	}
	srv, err := server.New(ctx, server.Config{Store: st, Cert: cert, Logger: slog.New(slog.DiscardHandler),
		// Every simulated node shares 127.0.0.1 and one process: lift the
		// per-address budgets and size the stream cap to the run.
		Limits: server.Limits{ChallengeRate: 1e9, ChallengeBurst: 1 << 30, RegisterRate: 1e9, RegisterBurst: 1 << 30,
			MaxStreams: opt.Nodes + 16, KnownMachines: opt.Nodes + 16}})
	if err != nil {
		return res, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	sock := filepath.Join(dir, "admin.sock")
	aln, err := server.ListenAdmin(sock)
	if err != nil {
		ln.Close()
		return res, err
	}
	// The node API as coord serves it, but with HTTP/2 offered, so that
	// 10,000 streams share a few dozen TCP connections: one process
	// holds both ends, and file descriptors are capped (often 20,000).
	hs := &http.Server{Handler: srv.Handler(), ErrorLog: log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}}
	hs.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1000}
	as := &http.Server{Handler: srv.AdminHandler()}
	go hs.Serve(tls.NewListener(ln, hs.TLSConfig))
	go as.Serve(aln)
	defer func() {
		cancel()
		srv.Close()
		hs.Close()
		as.Close()
	}()
	admin := adminapi.NewClient(sock)

	t0 := time.Now()
	machines, err := register(ctx, st, opt)
	if err != nil {
		return res, err
	}
	if _, err := st.SetPolicy(ctx, policyBefore, time.Now()); err != nil {
		return res, err
	}
	srv.NotifyChanged()
	logf("registered %d nodes in %v", opt.Nodes, time.Since(t0).Round(time.Millisecond))

	cl := newClient("https://"+ln.Addr().String(), srv.Fingerprint(), opt.Nodes)
	defer cl.tr.CloseIdleConnections()
	streams := make([]*stream, len(machines))
	errc := make(chan error, len(machines))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64) // handshakes in flight
	for i, m := range machines {
		streams[i] = &stream{full: make(chan struct{}), delta: make(chan time.Time, 1)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			err := cl.open(ctx, m, streams[i])
			<-sem
			if err != nil {
				errc <- err
			}
		}()
	}
	for i, s := range streams {
		select {
		case <-s.full:
		case err := <-errc:
			return res, fmt.Errorf("open stream: %w", err)
		case <-time.After(opt.Timeout):
			return res, fmt.Errorf("stream %d: no full map within %v", i, opt.Timeout)
		}
	}
	logf("%d streams open in %v; settling", len(streams), time.Since(t0).Round(time.Millisecond))
	// Online changes ripple as deltas; wait for quiet.
	for deadline := time.Now().Add(opt.Timeout); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		if time.Since(time.Unix(0, cl.lastMsg.Load())) > time.Second {
			break
		}
	}
	res.Setup = time.Since(t0)

	runtime.GC()
	cpu0 := cpuTime()
	start := time.Now()
	cl.mark.Store(start.UnixNano())
	var pr adminapi.PolicyResult
	if err := admin.Do(ctx, "POST", adminapi.PathPolicy, adminapi.PolicyRequest{Name: "loadtest.hujson", Body: policyAfter}, &pr); err != nil {
		return res, fmt.Errorf("policy set: %w", err)
	}
	lat := make([]time.Duration, 0, len(streams))
	timeout := time.After(opt.Timeout)
	for _, s := range streams {
		select {
		case at := <-s.delta:
			lat = append(lat, at.Sub(start))
		case err := <-errc:
			return res, fmt.Errorf("stream failed: %w", err)
		case <-timeout:
			return res, fmt.Errorf("only %d of %d streams got the policy delta within %v", len(lat), len(streams), opt.Timeout)
		}
	}
	res.CPU = cpuTime() - cpu0
	slices.Sort(lat)
	res.Affected = len(lat)
	res.Latency, res.P50 = lat[len(lat)-1], lat[len(lat)/2]
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapInuse = ms.HeapInuse
	res.MaxRSS = maxRSS()
	cancel()
	wg.Wait()
	return res, nil
}

// register inserts users, keys and nodes straight into the store.
func register(ctx context.Context, st *store.SQLite, opt Options) ([]member, error) {
	now := time.Now()
	keys := make([]store.Registration, opt.Users)
	for u := range opt.Users {
		name := fmt.Sprintf("user%d", u)
		if _, err := st.CreateUser(ctx, store.User{Name: name, Created: now}); err != nil {
			return nil, err
		}
		secret := fmt.Sprintf("loadtest-secret-%d", u)
		h := sha256.Sum256([]byte(secret))
		id := fmt.Sprintf("lt%04d", u)
		if err := st.CreatePreAuthKey(ctx, store.PreAuthKey{ID: id, Hash: h[:], Reusable: true, User: name,
			Expiry: now.Add(24 * time.Hour), Created: now}); err != nil {
			return nil, err
		}
		keys[u] = store.Registration{AuthKeyID: id, AuthKeyHash: h[:]}
	}
	machines := make([]member, opt.Nodes)
	for i := range machines {
		machines[i] = member{mk: key.NewMachine(), nk: nodeKey(i)}
		r := keys[i%opt.Users]
		r.MachineKey = machines[i].mk.Public()
		r.NodeKey = machines[i].nk
		r.Hostname = fmt.Sprintf("node%d", i)
		r.Now = now
		r.KeyLifetime = 24 * time.Hour
		if _, err := st.Register(ctx, r); err != nil {
			return nil, fmt.Errorf("register node %d: %w", i, err)
		}
	}
	return machines, nil
}

// nodeKey is a deterministic node key per index: the load client never
// needs the private half.
func nodeKey(i int) key.NodePublic {
	var k key.NodePublic
	h := sha256.Sum256([]byte(fmt.Sprintf("node-%d", i)))
	copy(k[:], h[:])
	return k
}

// member is one simulated node's keys.
type member struct {
	mk key.MachinePrivate
	nk key.NodePublic
}

// stream is one lightweight map stream.
type stream struct {
	full  chan struct{}
	delta chan time.Time
}

type client struct {
	base    string
	tr      *http.Transport
	hc      *http.Client
	mark    atomic.Int64 // UnixNano of the policy change; 0 before
	lastMsg atomic.Int64
}

func newClient(base, fp string, n int) *client {
	pin, _ := wire.ParseFingerprint(fp)
	tr := &http.Transport{
		MaxIdleConnsPerHost: 64,
		ForceAttemptHTTP2:   true,
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, // replaced by the pin below, as lanmesh agents do
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				if len(raw) == 0 {
					return errors.New("no certificate")
				}
				sum := sha256.Sum256(raw[0])
				if !key.Equal(sum[:], pin) {
					return errors.New("certificate does not match the pin")
				}
				return nil
			},
		},
	}
	return &client{base: base, tr: tr, hc: &http.Client{Transport: tr}}
}

// open runs the challenge and signed map request, then reads the stream
// in its own goroutine until ctx ends.
func (c *client) open(ctx context.Context, mem member, s *stream) error {
	m := mem.mk
	req, _ := http.NewRequestWithContext(ctx, "GET", c.base+wire.PathChallenge, nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	var ch wire.Challenge
	err = json.NewDecoder(resp.Body).Decode(&ch)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("challenge: %w", err)
	}
	body, _ := json.Marshal(wire.MapRequest{NodeKey: mem.nk})
	env, _ := json.Marshal(wire.Envelope{Version: wire.ProtocolVersion, Machine: m.Public(), Nonce: ch.Nonce, Body: body,
		Sig: m.Sign(wire.SignedBytes(wire.PathMap, ch.Nonce, body))})
	req, _ = http.NewRequestWithContext(ctx, "POST", c.base+wire.PathMap, bytes.NewReader(env))
	req.Header.Set("Content-Type", "application/json")
	resp, err = c.hc.Do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return fmt.Errorf("map: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	go c.read(resp.Body, s)
	return nil
}

func (c *client) read(body io.ReadCloser, s *stream) {
	defer body.Close()
	br := bufio.NewReaderSize(body, 64<<10)
	gotFull, gotDelta := false, false
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return
		}
		now := time.Now()
		c.lastMsg.Store(now.UnixNano())
		if !gotFull {
			if !bytes.Contains(line, []byte(`"full":true`)) {
				continue
			}
			gotFull = true
			close(s.full)
			continue
		}
		mark := c.mark.Load()
		if !gotDelta && mark != 0 && bytes.Contains(line, []byte(`"packet_filter"`)) {
			gotDelta = true
			s.delta <- now
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// maxRSS is the process's peak resident set in bytes.
func maxRSS() uint64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return uint64(ru.Maxrss) * 1024
}

// raiseFDLimit lifts the soft file limit toward want (two sockets per
// stream: client and server end live in this process).
func raiseFDLimit(want int) {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil || rl.Cur >= uint64(want) {
		return
	}
	if rl.Max < uint64(want) {
		// Root may raise the hard limit too; others keep what they have.
		hi := rl
		hi.Cur, hi.Max = uint64(want), uint64(want)
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &hi) == nil {
			return
		}
	}
	rl.Cur = min(uint64(want), rl.Max)
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
}
