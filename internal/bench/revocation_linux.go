package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/testbed"
)

// revNode is one agent of the revocation testbed.
type revNode struct {
	name, tun, user string
	a               *testbed.Agent
	pub             wgtypes.Key
	pubB64          string
	authKey         string
	gone            bool // its user was deleted
}

// RunRevocation builds the testbed, deletes Runs users one after the
// other and measures each (see the comment at the top of revocation.go).
func RunRevocation(ctx context.Context, opt RevocationOptions) (res *RevocationResult) {
	opt.defaults()
	res = &RevocationResult{Env: CurrentEnv(), Opts: opt, Load: loadAvg()}
	fail := func(err error) *RevocationResult {
		res.Errs = append(res.Errs, err.Error())
		return res
	}
	if opt.Nodes < 4 || opt.Runs*opt.NodesPerUser > opt.Nodes-3 || opt.Nodes > 250 {
		return fail(fmt.Errorf("revocation: %d runs of %d nodes each need more than %d nodes (and at most 250)", opt.Runs, opt.NodesPerUser, opt.Nodes))
	}
	if os.Geteuid() != 0 {
		return fail(errors.New("revocation: needs root (network namespaces)"))
	}
	if opt.BinDir != "" {
		os.Setenv("LANMESH_BIN_DIR", opt.BinDir)
	}
	log := opt.Log
	t0 := time.Now()
	defer func() { res.Wall = time.Since(t0) }()

	w, err := testbed.Open(testbed.Options{})
	if err != nil {
		return fail(err)
	}
	defer func() {
		if opt.KeepLogs || len(res.Failed()) > 0 {
			w.KeepLogs()
			res.LogDir = w.LogDir
		}
		w.Close()
	}()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	s, err := testbed.BuildStandard(w, testbed.StandardOptions{})
	if err != nil {
		return fail(err)
	}
	rh, err := s.AddRelayHost("relay", testbed.RelayIP)
	if err != nil {
		return fail(err)
	}
	d, err := testbed.PrepareDerp(sctx, rh, testbed.RelayIP)
	if err != nil {
		return fail(err)
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	// The UAPI sockets live in /var/run/wireguard, shared by every
	// namespace: a run-unique prefix keeps two runs on one machine apart.
	idb := make([]byte, 3)
	rand.Read(idb)
	tunPrefix := "w" + hex.EncodeToString(idb)
	cfgDir := filepath.Join(w.Dir, "revocation")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		return fail(err)
	}
	tokFile, mapFile, polFile := filepath.Join(cfgDir, "derp-token"), filepath.Join(cfgDir, "derp-map.json"), filepath.Join(cfgDir, "policy.hujson")
	for f, body := range map[string]string{
		tokFile: "relay-" + hex.EncodeToString(tok) + "\n",
		mapFile: d.DERPMap(2),
		polFile: `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`,
	} {
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			return fail(err)
		}
	}
	users := make([]string, opt.Runs)
	for i := range users {
		users[i] = fmt.Sprintf("gone%d", i+1)
	}
	m, err := testbed.StartMeshWith(sctx, s, func(f string, a ...any) { log.Debug(fmt.Sprintf(f, a...)) }, testbed.MeshOptions{
		CoordArgs: []string{"--derp=false", "--derp-map", mapFile, "--derp-token-file", tokFile},
		AgentArgs: map[string][]string{"router-a": {"--wg-uapi", "--tun", tunPrefix + "ra"}, "router-b": {"--wg-uapi", "--tun", tunPrefix + "rb"}},
		BeforeJoin: func(ctx context.Context, c *testbed.Coord) error {
			for _, u := range append([]string{"staff"}, users...) {
				if _, err := c.Admin(ctx, "users", "create", u); err != nil {
					return err
				}
			}
			if _, err := c.Admin(ctx, "policy", "set", polFile); err != nil {
				return err
			}
			r, err := c.Admin(ctx, "fingerprint")
			if err != nil {
				return err
			}
			return d.Start(ctx, "--verify-url", c.URL+"/v1/derp/verify", "--verify-token-file", tokFile,
				"--coord-fingerprint", strings.TrimSpace(r.Stdout))
		},
	})
	if err != nil {
		return fail(fmt.Errorf("mesh: %w", err))
	}
	// Laptops are routed through the internet's gateway, not bridged with
	// each other: on one flat segment every agent would hold a neighbour
	// entry for every other, and the kernel's neighbour table (1024
	// entries by default, shared by all namespaces) overflows near 32
	// agents ("neighbor table overflow", connect: no route to host).
	for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"}, {"net.ipv4.conf.all.send_redirects", "0"}, {"net.ipv4.conf.br0.send_redirects", "0"}} {
		if err := s.Inet.Sysctl(kv[0], kv[1]); err != nil {
			return fail(err)
		}
	}
	nodes := []*revNode{{name: "router-a", tun: tunPrefix + "ra", user: "admin", a: m.A, authKey: m.Keys["router-a"]}, {name: "router-b", tun: tunPrefix + "rb", user: "admin", a: m.B, authKey: m.Keys["router-b"]}}
	var mu sync.Mutex
	var joinErrs []string
	next := make(chan int)
	var wg sync.WaitGroup
	for range 4 { // four joins at a time
		wg.Go(func() {
			for i := range next {
				name := fmt.Sprintf("n%02d", i)
				user := "staff"
				if j := i - 3; j < opt.Runs*opt.NodesPerUser {
					user = users[j/opt.NodesPerUser]
				}
				a, k, err := addRoutedLaptop(sctx, m, s, name, tunPrefix+name, i, user)
				mu.Lock()
				if err != nil {
					joinErrs = append(joinErrs, err.Error())
				} else {
					nodes = append(nodes, &revNode{name: name, tun: tunPrefix + name, user: user, a: a, authKey: k})
				}
				mu.Unlock()
			}
		})
	}
	for i := 3; i <= opt.Nodes; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(joinErrs) > 0 {
		return fail(fmt.Errorf("joins: %s", strings.Join(joinErrs, "; ")))
	}
	for _, n := range nodes {
		st, err := n.a.Status(sctx)
		if err != nil {
			return fail(err)
		}
		if n.pub, err = wgtypes.ParseKey(st.Self.Key); err != nil {
			return fail(fmt.Errorf("%s: status key %q: %w", n.name, st.Self.Key, err))
		}
		n.pubB64 = st.Self.Key
	}
	res.Setup = time.Since(t0)
	log.Info("bench: revocation testbed up", "nodes", len(nodes), "setup_ms", res.Setup.Milliseconds())

	// Every device must hold every other node before the first run.
	tc := time.Now()
	if err := waitDevices(sctx, nodes, 3*time.Minute); err != nil {
		return fail(err)
	}
	res.Converged = time.Since(tc)
	log.Info("bench: revocation: every device holds every peer", "after_ms", res.Converged.Milliseconds())

	mem := newProcStats()
	mem.sample(nodes)
	for _, user := range users {
		run := revokeOnce(sctx, m, d, s, nodes, user, opt)
		mem.sample(nodes)
		for _, n := range nodes {
			if n.user == user {
				n.gone = true
				n.a.Stop()
			}
		}
		log.Info("bench: revocation run", "user", user, "nodes", run.Deleted, "watched", run.Observers,
			"last_peer_ms", run.LastPeer.Milliseconds(), "relay_ms", run.RelayLast.Milliseconds(), "errs", run.Errs)
		res.Runs = append(res.Runs, run)
	}
	mem.sample(nodes)
	res.Errs = append(res.Errs, scanSecrets(res, w, nodes, "relay-"+hex.EncodeToString(tok))...)
	res.AgentHWMMax, res.AgentHWMSum, res.AgentRSSSum, res.AgentCPU, res.AgentsMeasure = mem.totals()
	if p := m.Coord.Proc; p != nil && p.Running() {
		res.CoordHWM, _, _ = procMem(p.Pid())
	}
	if d.Proc != nil && d.Proc.Running() {
		res.DerpHWM, _, _ = procMem(d.Proc.Pid())
	}
	return res
}

// addRoutedLaptop is testbed's AddLaptop with the laptop's address as a
// /32 behind the internet's gateway (198.18.0.1), so it needs a
// neighbour entry for the gateway only: a namespace of its own at
// 198.18.3.n running `lanmesh agent --wg-uapi --tun TUN`, joined with
// a key of user.
func addRoutedLaptop(ctx context.Context, m *testbed.Mesh, s *testbed.Standard, name, tun string, n int, user string) (*testbed.Agent, string, error) {
	h, err := s.World.AddHost(name)
	if err != nil {
		return nil, "", err
	}
	if err := s.Internet.Attach(h, "eth0", fmt.Sprintf("198.18.3.%d/32", n)); err != nil {
		return nil, "", fmt.Errorf("laptop %s: %w", name, err)
	}
	if _, err := h.Run(ctx, "ip", "route", "add", testbed.InternetGW, "dev", "eth0"); err != nil {
		return nil, "", fmt.Errorf("laptop %s: %w", name, err)
	}
	if err := h.AddRoute("default", testbed.InternetGW); err != nil {
		return nil, "", fmt.Errorf("laptop %s: %w", name, err)
	}
	k, err := m.Coord.CreateKey(ctx, "--user", user)
	if err != nil {
		return nil, "", fmt.Errorf("create auth key for %s: %w", name, err)
	}
	a, err := testbed.StartAgent(ctx, h, name, "--wg-uapi", "--tun", tun)
	if err != nil {
		return nil, "", fmt.Errorf("start agent %s: %w", name, err)
	}
	if _, err := a.Up(ctx, m.Coord, k); err != nil {
		return a, "", fmt.Errorf("%s: lanmesh up: %w", name, err)
	}
	return a, k, nil
}

// deviceKeys asks the device tun for its configuration ("get=1") and
// returns its peers' public keys.
//
// The device is read over its UAPI socket (/var/run/wireguard/TUN.sock,
// the agent's --wg-uapi). wgctrl cannot be used: it parses each peer's
// endpoint as host:port, and lanmesh's endpoints are node keys (magicsock
// picks the path).
func deviceKeys(tun string) (map[wgtypes.Key]bool, error) {
	c, err := net.DialTimeout("unix", filepath.Join("/var/run/wireguard", tun+".sock"), 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("read WireGuard device %s: %w", tun, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "get=1\n\n"); err != nil {
		return nil, fmt.Errorf("read WireGuard device %s: %w", tun, err)
	}
	out := map[wgtypes.Key]bool{}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			return out, nil
		}
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "public_key":
			raw, err := hex.DecodeString(v)
			if err != nil || len(raw) != wgtypes.KeyLen {
				return nil, fmt.Errorf("WireGuard device %s: bad public_key %q", tun, v)
			}
			out[wgtypes.Key(raw)] = true
		case "errno":
			if v != "0" {
				return nil, fmt.Errorf("WireGuard device %s: get answered errno=%s", tun, v)
			}
		}
	}
	return nil, fmt.Errorf("read WireGuard device %s: %v (no end of the answer)", tun, sc.Err())
}

// missing lists the names of want (all nodes not gone, but self) that
// the device's peer set has not.
func missing(self *revNode, nodes []*revNode, have map[wgtypes.Key]bool) []string {
	var out []string
	for _, n := range nodes {
		if n != self && !n.gone && !have[n.pub] {
			out = append(out, n.name)
		}
	}
	return out
}

// waitDevices waits until every device holds every other node.
func waitDevices(ctx context.Context, nodes []*revNode, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, n := range nodes {
		for {
			have, err := deviceKeys(n.tun)
			var miss []string
			if err == nil {
				if miss = missing(n, nodes, have); len(miss) == 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s's device after %v: missing %v (err %v)", n.name, limit, miss, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// revokeOnce deletes user and measures when every remaining device and
// the relay let go of the user's nodes.
func revokeOnce(ctx context.Context, m *testbed.Mesh, d *testbed.Derp, s *testbed.Standard, nodes []*revNode, user string, opt RevocationOptions) RevocationRun {
	run := RevocationRun{User: user}
	var victims, observers []*revNode
	for _, n := range nodes {
		switch {
		case n.gone:
		case n.user == user:
			victims = append(victims, n)
		default:
			observers = append(observers, n)
		}
	}
	run.Deleted, run.Observers = len(victims), len(observers)
	privs := make([]key.NodePrivate, len(victims))
	for i, v := range victims {
		b64, _, err := v.a.PrivateKey(v.pubB64)
		if err == nil {
			err = privs[i].UnmarshalText([]byte(b64))
		}
		if err != nil {
			run.Errs = append(run.Errs, err.Error())
			return run
		}
	}
	connect := func(p key.NodePrivate) error {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		c, err := derp.ConnectWith(cctx, d.URL, p, derp.ClientOptions{Fingerprint: d.Fingerprint, DialContext: s.Coord.DialContext})
		if err == nil {
			c.Close()
		}
		return err
	}
	// The relay admits the user's nodes before the delete.
	if err := connect(privs[0]); err != nil {
		run.Errs = append(run.Errs, fmt.Sprintf("before the delete, lanmesh-derp refused %s: %v", victims[0].name, err))
		return run
	}

	victimKeys := map[wgtypes.Key]bool{}
	for _, v := range victims {
		victimKeys[v.pub] = true
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(opt.Deadline)
	for _, o := range observers {
		wg.Go(func() {
			var last error
			for {
				have, err := deviceKeys(o.tun)
				now := time.Since(start)
				if err == nil {
					held := 0
					for k := range victimKeys {
						if have[k] {
							held++
						}
					}
					if held == 0 {
						mu.Lock()
						run.PeerDrops = append(run.PeerDrops, now)
						run.LastPeer = max(run.LastPeer, now)
						mu.Unlock()
						return
					}
					last = fmt.Errorf("still holds %d of the user's %d keys", held, len(victimKeys))
				} else {
					last = err
				}
				if time.Now().After(deadline) || ctx.Err() != nil {
					mu.Lock()
					run.Errs = append(run.Errs, fmt.Sprintf("%s's device %v after users delete: %v", o.name, opt.Deadline, last))
					mu.Unlock()
					return
				}
				time.Sleep(opt.Poll)
			}
		})
	}
	for i, p := range privs {
		wg.Go(func() {
			var last error
			for {
				err := connect(p)
				now := time.Since(start)
				if err != nil && strings.Contains(err.Error(), "not allowed") {
					mu.Lock()
					run.RelayRefused = append(run.RelayRefused, now)
					run.RelayLast = max(run.RelayLast, now)
					mu.Unlock()
					return
				}
				last = err
				if time.Now().After(deadline) || ctx.Err() != nil {
					mu.Lock()
					run.Errs = append(run.Errs, fmt.Sprintf("lanmesh-derp still admits %s %v after users delete (last: %v)", victims[i].name, opt.Deadline, last))
					mu.Unlock()
					return
				}
				time.Sleep(2 * opt.Poll)
			}
		})
	}
	// What `lanmesh-coord users delete USER` sends, on coord's admin
	// socket: the CLI's own start-up (hundreds of ms on a loaded machine)
	// is not part of the revocation.
	err := adminapi.NewClient(filepath.Join(m.Coord.StateDir, "admin.sock")).Do(ctx, "DELETE", adminapi.UserPath(user), nil, nil)
	mu.Lock()
	run.Command = time.Since(start)
	if err != nil {
		run.Errs = append(run.Errs, fmt.Sprintf("users delete %s: %v", user, err))
	}
	mu.Unlock()
	wg.Wait()

	// Nothing else moved: every remaining device still holds every other
	// remaining node, and the relay still admits a remaining node.
	for _, v := range victims {
		v.gone = true // for missing(); the caller stops them
	}
	for _, o := range observers {
		have, err := deviceKeys(o.tun)
		if err != nil {
			run.Errs = append(run.Errs, err.Error())
		} else if miss := missing(o, nodes, have); len(miss) > 0 {
			run.Errs = append(run.Errs, fmt.Sprintf("%s's device lost peers of other users: %v", o.name, miss))
		}
	}
	o := observers[len(observers)-1]
	if b64, _, err := o.a.PrivateKey(o.pubB64); err != nil {
		run.Errs = append(run.Errs, err.Error())
	} else {
		var p key.NodePrivate
		if err := p.UnmarshalText([]byte(b64)); err != nil {
			run.Errs = append(run.Errs, err.Error())
		} else if err := connect(p); err != nil {
			run.Errs = append(run.Errs, fmt.Sprintf("after the delete lanmesh-derp refused %s, whose user was not deleted: %v", o.name, err))
		}
	}
	return run
}

// procStats follows the agents' memory and CPU time through /proc.
type procStats struct {
	hwm, rss map[string]uint64
	cpu      map[string]time.Duration
}

func newProcStats() *procStats {
	return &procStats{hwm: map[string]uint64{}, rss: map[string]uint64{}, cpu: map[string]time.Duration{}}
}

func (p *procStats) sample(nodes []*revNode) {
	for _, n := range nodes {
		if n.a.Proc == nil || !n.a.Proc.Running() {
			continue
		}
		pid := n.a.Proc.Pid()
		if hwm, rss, err := procMem(pid); err == nil {
			p.hwm[n.name] = max(p.hwm[n.name], hwm)
			p.rss[n.name] = rss
		}
		if c, err := procCPU(pid); err == nil {
			p.cpu[n.name] = time.Duration(c) * 10 * time.Millisecond // clock ticks
		}
	}
}

func (p *procStats) totals() (hwmMax, hwmSum, rssSum uint64, cpu time.Duration, n int) {
	for name, h := range p.hwm {
		hwmMax = max(hwmMax, h)
		hwmSum += h
		rssSum += p.rss[name]
		cpu += p.cpu[name]
	}
	return hwmMax, hwmSum, rssSum, cpu, len(p.hwm)
}

// scanSecrets is the S11 check over every log of the run (coord, relay,
// agents, CLI output): no auth key, node private key or relay token.
func scanSecrets(res *RevocationResult, w *testbed.World, nodes []*revNode, token string) []string {
	secrets := []testbed.Secret{{Name: "relay token", Value: token}}
	for _, n := range nodes {
		if n.authKey != "" {
			secrets = append(secrets, testbed.Secret{Name: n.name + "'s auth key", Value: n.authKey})
		}
		if b64, _, err := n.a.PrivateKey(n.pubB64); err == nil {
			secrets = append(secrets, testbed.Secret{Name: n.name + "'s node private key", Value: b64})
		} else {
			return []string{fmt.Sprintf("S11 check: %v", err)}
		}
	}
	res.SecretsScanned = len(secrets)
	hits, err := testbed.ScanLogs(secrets, []string{w.LogDir}, nil)
	if err != nil {
		return []string{fmt.Sprintf("S11 check: %v", err)}
	}
	for i := range hits {
		hits[i] = "S11: " + hits[i]
	}
	return hits
}
