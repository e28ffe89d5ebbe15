package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// The abuse benchmark (issue 14, acceptance 1; S18): a real lanmesh-coord
// on loopback is flooded while real control clients (the agent's own
// internal/controlclient) register and hold their netmap streams. The
// attackers use their own loopback addresses, as an attacker on the
// internet has its own: 127.0.0.2 floods challenges, health checks and
// signed registrations from made-up machines as fast as it can; 127.0.0.3
// opens TLS connections that dribble a request body one byte a second;
// 127.0.0.4 opens TCP connections and sends nothing. The agents use
// 127.0.0.1.

// AbuseOptions configures RunAbuse.
type AbuseOptions struct {
	Coord    string        // the lanmesh-coord binary
	Agents   int           // default 20
	Hold     time.Duration // how long the agents hold their streams under attack; default 30 s
	Flooders int           // goroutines flooding challenges; default 16
	Forgers  int           // goroutines posting signed registrations of made-up machines; default 4
	Slow     int           // dribbling TLS connections kept open; default 300 (past --max-conns-per-source 256)
	Idle     int           // silent TCP connections kept open; default 64
	Stall    int           // relay handshakes started and left hanging; default 32 (past the per-source share of 16)
	RSSBound uint64        // coord's peak RSS (VmHWM) must stay under it; default 128 MiB
	Log      *slog.Logger
}

// AbuseResult is what a run measured.
type AbuseResult struct {
	Env  Env
	Opts AbuseOptions

	AgentsOK    int           // registered, got a full map and kept the stream to the end
	AgentErrs   []string      // per failed agent
	RegisterP50 time.Duration // register call under attack (challenge + signed request)
	RegisterMax time.Duration
	// RegisterRetries are registrations coord answered 429 (its
	// per-address budget for first registrations, 20 at once) and that
	// were retried after Retry-After, as the agent does.
	RegisterRetries int64
	FullMapMax      time.Duration // from opening the stream to the full netmap
	MaxGap          time.Duration // longest silence on any stream during the hold

	Challenges map[int]int64 // flood answers by HTTP status (0: transport error)
	Forged     map[int]int64 // answers to signed registrations of made-up machines
	FloodSecs  float64       // how long the flood ran
	// SaturatedAfter is when the flood first got an answer other than
	// 200; the agents start a second later.
	SaturatedAfter time.Duration

	SlowOpened  int64         // dribbling connections that got through TLS
	SlowRefused int64         // closed by coord before or during TLS (per-source cap)
	SlowHeldMax time.Duration // longest a dribbling connection stayed open
	IdleOpened  int64
	IdleHeldMax time.Duration

	StallOpened int64 // relay upgrades that got a ServerKey and then stalled
	StallShut   int64 // closed before a ServerKey (handshake caps)

	// Two more nodes relay packets to each other through coord's embedded
	// relay once a second during the hold.
	RelayConnect  time.Duration // both connected, max
	RelayRounds   int           // round trips that worked
	RelayFailures []string

	CoordHWM uint64 // VmHWM of the coord process at the end, bytes
	CoordRSS uint64 // VmRSS at the end

	Errs []string // setup errors
}

// Failed lists what broke the property: an agent failed, or coord grew
// past the bound.
func (r *AbuseResult) Failed() []string {
	f := slices.Clone(r.Errs)
	if r.AgentsOK != r.Opts.Agents {
		f = append(f, fmt.Sprintf("%d of %d agents failed: %s", r.Opts.Agents-r.AgentsOK, r.Opts.Agents, strings.Join(r.AgentErrs, "; ")))
	}
	if r.CoordHWM == 0 && len(r.Errs) == 0 {
		f = append(f, "coord's peak RSS was not measured")
	}
	if r.CoordHWM > r.Opts.RSSBound {
		f = append(f, fmt.Sprintf("coord peak RSS %d MiB over the %d MiB bound", r.CoordHWM>>20, r.Opts.RSSBound>>20))
	}
	if len(r.RelayFailures) > 0 || (r.RelayRounds == 0 && len(r.Errs) == 0) {
		f = append(f, fmt.Sprintf("relay: %d round trips worked; failures: %s", r.RelayRounds, strings.Join(r.RelayFailures, "; ")))
	}
	if r.Challenges[http.StatusTooManyRequests] == 0 && len(r.Errs) == 0 {
		f = append(f, "the challenge flood never got a 429: the flood did not reach the limit")
	}
	return f
}

type counter struct {
	mu sync.Mutex
	m  map[int]int64
}

func (c *counter) add(code int) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[int]int64{}
	}
	c.m[code]++
	c.mu.Unlock()
}

func (c *counter) snapshot() map[int]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cloneCounts(c.m)
}

func cloneCounts(m map[int]int64) map[int]int64 {
	out := make(map[int]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// RunAbuse runs the flood and measures.
func RunAbuse(ctx context.Context, opt AbuseOptions) *AbuseResult {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&opt.Agents, 20)
	def(&opt.Flooders, 16)
	def(&opt.Forgers, 4)
	def(&opt.Slow, 300)
	def(&opt.Idle, 64)
	def(&opt.Stall, 32)
	if opt.Hold <= 0 {
		opt.Hold = 30 * time.Second
	}
	if opt.RSSBound == 0 {
		opt.RSSBound = 128 << 20
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	res := &AbuseResult{Env: CurrentEnv(), Opts: opt}
	fail := func(err error) *AbuseResult {
		res.Errs = append(res.Errs, err.Error())
		return res
	}
	dir, err := os.MkdirTemp("", "lanmesh-abuse-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	co, err := startLoopbackCoord(ctx, opt.Coord, dir)
	if err != nil {
		return fail(err)
	}
	defer co.stop()
	out, err := exec.CommandContext(ctx, opt.Coord, "--state-dir", dir, "keys", "create", "--reusable", "--expiry", "1h").Output()
	if err != nil {
		return fail(fmt.Errorf("keys create: %w", err))
	}
	ak, err := wire.ParseAuthKey(strings.TrimSpace(string(out)))
	if err != nil {
		return fail(fmt.Errorf("keys create printed no auth key: %w", err))
	}
	url := "https://" + co.addr

	// The attack starts first and runs until the agents are done.
	var chal, forged counter
	var slowOpened, slowRefused, slowHeld, idleOpened, idleHeld, stallOpened, stallShut atomic.Int64
	actx, stopAttack := context.WithCancel(ctx)
	var wg sync.WaitGroup
	floodStart := time.Now()
	nonce := fetchNonce(ctx, url) // before the flood: made-up machines reuse it
	for range opt.Flooders {
		wg.Go(func() { floodChallenges(actx, url, &chal) })
	}
	for range opt.Forgers {
		wg.Go(func() { forgeRegisters(actx, url, nonce, &forged) })
	}
	for range opt.Slow {
		wg.Go(func() { dribble(actx, co.addr, &slowOpened, &slowRefused, &slowHeld) })
	}
	for range opt.Idle {
		wg.Go(func() { silent(actx, co.addr, &idleOpened, &idleHeld) })
	}
	for range opt.Stall {
		wg.Go(func() { stallRelay(actx, co.addr, &stallOpened, &stallShut) })
	}
	// Agents join only once the flood has hit a limit (429 now; coord
	// before issue 14 answered 503 once its nonce table was full), so
	// they meet coord at its most loaded.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		m := chal.snapshot()
		if len(m) > 1 || (len(m) == 1 && m[http.StatusOK] == 0) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.SaturatedAfter = time.Since(floodStart)
	time.Sleep(time.Second)
	opt.Log.Info("abuse: attack saturated; agents joining", "after", res.SaturatedAfter, "flooders", opt.Flooders, "slow", opt.Slow, "idle", opt.Idle)

	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		res.RelayConnect, res.RelayRounds, res.RelayFailures = relayProbe(ctx, url, co.fp, ak, time.Now().Add(opt.Hold))
	}()
	agents := runAgents(ctx, url, co.fp, ak, opt)
	<-relayDone
	stopAttack()
	wg.Wait()
	res.FloodSecs = time.Since(floodStart).Seconds()

	hwm, rss, err := procMem(co.cmd.Process.Pid)
	if err != nil {
		res.Errs = append(res.Errs, err.Error())
	}
	res.CoordHWM, res.CoordRSS = hwm, rss
	res.Challenges, res.Forged = chal.snapshot(), forged.snapshot()
	res.SlowOpened, res.SlowRefused, res.SlowHeldMax = slowOpened.Load(), slowRefused.Load(), time.Duration(slowHeld.Load())
	res.IdleOpened, res.IdleHeldMax = idleOpened.Load(), time.Duration(idleHeld.Load())
	res.StallOpened, res.StallShut = stallOpened.Load(), stallShut.Load()
	res.RegisterRetries = registerRetries.Swap(0)

	var regs []time.Duration
	for _, a := range agents {
		if a.err != nil {
			res.AgentErrs = append(res.AgentErrs, a.err.Error())
			continue
		}
		res.AgentsOK++
		regs = append(regs, a.register)
		res.FullMapMax = max(res.FullMapMax, a.fullMap)
		res.MaxGap = max(res.MaxGap, a.maxGap)
	}
	if len(regs) > 0 {
		slices.Sort(regs)
		res.RegisterP50, res.RegisterMax = regs[len(regs)/2], regs[len(regs)-1]
	}
	opt.Log.Info("abuse: done", "agents_ok", res.AgentsOK, "coord_hwm_mib", res.CoordHWM>>20, "challenges", res.Challenges)
	return res
}

type loopbackCoord struct {
	cmd  *exec.Cmd
	addr string
	fp   string
	done chan struct{}
}

func (c *loopbackCoord) stop() {
	c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// startLoopbackCoord runs `lanmesh-coord serve` on 127.0.0.1 with its
// default limits and waits for its address and fingerprint.
func startLoopbackCoord(ctx context.Context, bin, dir string) (*loopbackCoord, error) {
	cmd := exec.Command(bin, "--state-dir", dir, "serve", "--listen", "127.0.0.1:0", "--server-url", "https://127.0.0.1", "--stun-port", "0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	c := &loopbackCoord{cmd: cmd, done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var tail []string
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "lanmesh-coord: serving on "); ok {
				c.addr, _, _ = strings.Cut(a, ",")
			}
			if fp, ok := strings.CutPrefix(line, "lanmesh-coord: certificate fingerprint "); ok {
				c.fp = strings.TrimSpace(fp)
				ready <- nil
			}
			if len(tail) < 20 {
				tail = append(tail, line)
			}
		}
		ready <- fmt.Errorf("lanmesh-coord exited before serving: %s", strings.Join(tail, " | "))
	}()
	go func() { cmd.Wait(); close(c.done) }()
	select {
	case err := <-ready:
		if err != nil {
			c.stop()
			return nil, err
		}
	case <-time.After(30 * time.Second):
		c.stop()
		return nil, errors.New("lanmesh-coord did not print its fingerprint within 30 s")
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
	return c, nil
}

// fromAddr is an HTTP client whose connections come from local address ip.
func fromAddr(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // the attacker does not care who answers
		MaxIdleConnsPerHost: 64,
	}}
}

func fetchNonce(ctx context.Context, url string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+wire.PathChallenge, nil)
	resp, err := fromAddr("127.0.0.2").Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var ch wire.Challenge
	json.NewDecoder(resp.Body).Decode(&ch)
	return ch.Nonce
}

// floodChallenges asks for challenges (and every tenth time the health
// check) as fast as coord answers.
func floodChallenges(ctx context.Context, url string, c *counter) {
	hc := fromAddr("127.0.0.2")
	defer hc.CloseIdleConnections()
	for i := 0; ctx.Err() == nil; i++ {
		path := wire.PathChallenge
		if i%10 == 9 {
			path = wire.PathHealth
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				c.add(0)
			}
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.add(resp.StatusCode)
	}
}

// forgeRegisters posts correctly signed registrations of fresh machine
// keys with a made-up auth key: each costs coord a signature check.
func forgeRegisters(ctx context.Context, url, nonce string, c *counter) {
	hc := fromAddr("127.0.0.2")
	defer hc.CloseIdleConnections()
	for ctx.Err() == nil {
		mk := key.NewMachine()
		body, _ := json.Marshal(wire.RegisterRequest{NodeKey: key.NewNode().Public(), Hostname: "forged", AuthKey: "lmk1.forged.forgedsecretforgedsecret"}) // well-formed, unknown
		env, _ := json.Marshal(wire.Envelope{Version: wire.ProtocolVersion, Machine: mk.Public(), Nonce: nonce, Body: body, Sig: mk.Sign(wire.SignedBytes(wire.PathRegister, nonce, body))})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+wire.PathRegister, bytes.NewReader(env))
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				c.add(0)
			}
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.add(resp.StatusCode)
	}
}

func storeMax(a *atomic.Int64, d time.Duration) {
	for {
		old := a.Load()
		if int64(d) <= old || a.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// dribble keeps one slow-body connection open at a time: TLS, a POST
// announcing 60000 bytes, then one byte a second until coord hangs up.
func dribble(ctx context.Context, addr string, opened, refused, held *atomic.Int64) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: 5 * time.Second}
	for ctx.Err() == nil {
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = conn.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			if ctx.Err() == nil {
				refused.Add(1)
			}
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		opened.Add(1)
		start := time.Now()
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: coord\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n", wire.PathRegister)
		for err == nil && ctx.Err() == nil {
			_, err = conn.Write([]byte("{"))
			sleepCtx(ctx, time.Second)
		}
		stop()
		conn.Close()
		if ctx.Err() == nil {
			storeMax(held, time.Since(start))
		}
	}
}

// silent keeps one TCP connection open that never says anything.
func silent(ctx context.Context, addr string, opened, held *atomic.Int64) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}, Timeout: 5 * time.Second}
	for ctx.Err() == nil {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		opened.Add(1)
		start := time.Now()
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		io.Copy(io.Discard, conn) // until coord hangs up
		stop()
		conn.Close()
		if ctx.Err() == nil {
			storeMax(held, time.Since(start))
		}
	}
}

// stallRelay keeps one relay handshake hanging at a time: TLS, the
// upgrade to the relay protocol, then silence where ClientInfo belongs.
func stallRelay(ctx context.Context, addr string, opened, shut *atomic.Int64) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}, Timeout: 5 * time.Second}
	for ctx.Err() == nil {
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: coord\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", derp.Path, derp.UpgradeProtocol)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		got := false
		if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
			_, _, err = derp.ReadFrame(br, nil)
			got = err == nil
		}
		if got {
			opened.Add(1)
			io.Copy(io.Discard, br) // until the relay gives up on us
		} else if ctx.Err() == nil {
			shut.Add(1)
			sleepCtx(ctx, 50*time.Millisecond)
		}
		stop()
		conn.Close()
	}
}

// relayProbe registers two nodes, connects both to coord's embedded relay
// and sends a packet each way once a second until the deadline.
func relayProbe(ctx context.Context, url, fp string, ak wire.AuthKey, until time.Time) (time.Duration, int, []string) {
	var fails []string
	var clients [2]*derp.Client
	var keys [2]key.NodePublic
	var connect time.Duration
	for i := range clients {
		c, err := controlclient.New(controlclient.Options{ServerURL: url, Fingerprint: fp, MachineKey: key.NewMachine()})
		if err != nil {
			return 0, 0, []string{err.Error()}
		}
		defer c.Close()
		np := key.NewNode()
		keys[i] = np.Public()
		if err := register(ctx, c, wire.RegisterRequest{AuthKey: ak.WithoutFingerprint(), NodeKey: np.Public(), Hostname: fmt.Sprintf("relay-%d", i)}); err != nil {
			return 0, 0, []string{fmt.Sprintf("relay-%d: %v", i, err)}
		}
		t0 := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		dc, err := derp.Connect(cctx, url+derp.Path, np, fp)
		cancel()
		if err != nil {
			return 0, 0, []string{fmt.Sprintf("relay-%d: connect to the relay: %v", i, err)}
		}
		defer dc.Close()
		connect = max(connect, time.Since(t0))
		clients[i] = dc
	}
	rounds := 0
	for n := 0; time.Now().Before(until) && ctx.Err() == nil; n++ {
		for i := range clients {
			from, to := clients[i], clients[1-i]
			msg := fmt.Appendf(nil, "round %d from %d", n, i)
			if err := from.Send(keys[1-i], msg); err != nil {
				fails = append(fails, fmt.Sprintf("round %d: send: %v", n, err))
				return connect, rounds, fails
			}
			if err := recvFrom(to, keys[i], msg); err != nil {
				fails = append(fails, fmt.Sprintf("round %d: %v", n, err))
				return connect, rounds, fails
			}
		}
		rounds++
		sleepCtx(ctx, time.Second)
	}
	return connect, rounds, fails
}

// recvFrom waits up to 5 s for packet want from src, skipping anything else.
func recvFrom(c *derp.Client, src key.NodePublic, want []byte) error {
	type res struct {
		m   derp.Message
		err error
	}
	deadline := time.After(5 * time.Second)
	for {
		ch := make(chan res, 1)
		go func() { m, err := c.RecvMessage(); ch <- res{m, err} }()
		select {
		case r := <-ch:
			if r.err != nil {
				return fmt.Errorf("receive: %w", r.err)
			}
			if r.m.Kind == derp.MsgPacket && r.m.Key == src && bytes.Equal(r.m.Data, want) {
				return nil
			}
		case <-deadline:
			return errors.New("no relayed packet within 5 s")
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

type agentRun struct {
	register, fullMap, maxGap time.Duration
	err                       error
}

// runAgents registers opt.Agents machines at once, opens their netmap
// streams, holds them for half of opt.Hold, reconnects (a fresh
// challenge and signed map request, as after a network blip) and holds
// the second stream for the other half; a stream that ends early, or any
// error, fails that agent.
func runAgents(ctx context.Context, url, fp string, ak wire.AuthKey, opt AbuseOptions) []agentRun {
	runs := make([]agentRun, opt.Agents)
	var wg sync.WaitGroup
	joined := time.Now().Add(10 * time.Second) // joining takes a few seconds at most
	phases := []time.Time{joined.Add(opt.Hold / 2), joined.Add(opt.Hold)}
	for i := range runs {
		wg.Go(func() {
			r := &runs[i]
			r.err = runAgent(ctx, url, fp, ak, fmt.Sprintf("agent-%02d", i), phases, r)
			if r.err != nil {
				r.err = fmt.Errorf("agent-%02d: %w", i, r.err)
			}
		})
	}
	wg.Wait()
	return runs
}

func runAgent(ctx context.Context, url, fp string, ak wire.AuthKey, name string, phases []time.Time, r *agentRun) error {
	c, err := controlclient.New(controlclient.Options{ServerURL: url, Fingerprint: fp, MachineKey: key.NewMachine()})
	if err != nil {
		return err
	}
	defer c.Close()
	nk := key.NewNode().Public()
	t0 := time.Now()
	if err := register(ctx, c, wire.RegisterRequest{AuthKey: ak.WithoutFingerprint(), NodeKey: nk, Hostname: name}); err != nil {
		return err
	}
	r.register = time.Since(t0)
	for i, until := range phases {
		if err := holdStream(ctx, c, nk, name, until, r); err != nil {
			return fmt.Errorf("stream %d of %d: %w", i+1, len(phases), err)
		}
	}
	return nil
}

// holdStream opens a netmap stream and holds it until the deadline.
func holdStream(ctx context.Context, c *controlclient.Client, nk key.NodePublic, name string, until time.Time, r *agentRun) error {
	mctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	t1 := time.Now()
	last := t1
	full := false
	err := c.Map(mctx, wire.MapRequest{NodeKey: nk, Hostname: name}, func(m *wire.MapMessage) error {
		now := time.Now()
		if m.Full && !full {
			full = true
			r.fullMap = max(r.fullMap, now.Sub(t1))
		}
		if full {
			r.maxGap = max(r.maxGap, now.Sub(last))
		}
		last = now
		return nil
	})
	switch {
	case !full:
		return fmt.Errorf("no full netmap: %v", err)
	case mctx.Err() == nil || ctx.Err() != nil:
		return fmt.Errorf("netmap stream ended %v before the hold was over: %v", time.Until(until).Round(time.Millisecond), err)
	}
	return nil
}

// registerRetries counts registrations coord asked to retry (429), across
// the run.
var registerRetries atomic.Int64

// register registers like the agent does (agent/daemon): a 429 or 503
// from coord means "not now", so it waits Retry-After and tries again,
// up to 5 times.
func register(ctx context.Context, c *controlclient.Client, req wire.RegisterRequest) error {
	for attempt := 1; ; attempt++ {
		_, err := c.Register(ctx, req)
		var se *controlclient.StatusError
		if err == nil || attempt == 5 || !errors.As(err, &se) || !se.Busy() {
			return err
		}
		registerRetries.Add(1)
		sleepCtx(ctx, max(se.RetryAfter, time.Second))
	}
}

// procMem reads VmHWM and VmRSS of pid from /proc/PID/status.
func procMem(pid int) (hwm, rss uint64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, fmt.Errorf("coord memory: %w", err)
	}
	return parseStatusKB(b, "VmHWM:"), parseStatusKB(b, "VmRSS:"), nil
}

// parseStatusKB returns the "NAME: N kB" field of /proc/PID/status in
// bytes; 0 if absent.
func parseStatusKB(b []byte, name string) uint64 {
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}
