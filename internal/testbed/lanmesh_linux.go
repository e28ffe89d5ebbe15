package testbed

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/curve25519"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// Binaries are the lanmesh programs a world runs.
type Binaries struct {
	Dir     string
	Lanmesh string
	Coord   string
	Derp    string // lanmesh-derp, the standalone relay
}

var (
	binMu   sync.Mutex // guards the four below
	binDone bool       // false again after RemoveBuiltBinaries
	bins    Binaries
	binErr  error
	// buildErrs keeps why a binary did not build.
	buildErrs = map[string]error{}
)

// FindBinaries returns where the binaries are: $LANMESH_BIN_DIR, or a
// temp dir (lanmesh-testbed-bin-<pid>, removed by a later Sweep once this
// process is gone) that they are built into once per process. Each one is
// checked when it is started, so a test that needs only the agent does
// not need coord to build.
func FindBinaries() (Binaries, error) {
	binMu.Lock()
	defer binMu.Unlock()
	return findBinariesLocked()
}

func findBinariesLocked() (Binaries, error) {
	if !binDone {
		binDone = true
		if d := os.Getenv("LANMESH_BIN_DIR"); d != "" {
			bins = binariesIn(d)
		} else {
			bins, binErr = buildBinaries()
		}
	}
	return bins, binErr
}

// binary returns the path of one binary, or why it is missing.
func binary(pick func(Binaries) string) (string, error) {
	binMu.Lock()
	defer binMu.Unlock()
	b, err := findBinariesLocked()
	if err != nil {
		return "", err
	}
	p := pick(b)
	if _, err := os.Stat(p); err != nil {
		if e, ok := buildErrs[filepath.Base(p)]; ok {
			return "", e
		}
		return "", fmt.Errorf("testbed: binary %s: %w (set LANMESH_BIN_DIR or build it)", p, err)
	}
	return p, nil
}

func buildBinaries() (Binaries, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return Binaries{}, errors.New("testbed: set LANMESH_BIN_DIR or run inside the lanmesh module so the binaries can be built")
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("lanmesh-testbed-bin-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Binaries{}, err
	}
	for _, name := range []string{"lanmesh", "lanmesh-coord", "lanmesh-derp"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		cmd.Dir = filepath.Dir(mod)
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErrs[name] = fmt.Errorf("testbed: go build ./cmd/%s: %v\n%s", name, err, b)
		}
	}
	return binariesIn(dir), nil
}

func binariesIn(d string) Binaries {
	return Binaries{Dir: d, Lanmesh: filepath.Join(d, "lanmesh"), Coord: filepath.Join(d, "lanmesh-coord"), Derp: filepath.Join(d, "lanmesh-derp")}
}

// RemoveBuiltBinaries deletes the binaries FindBinaries built (never a
// LANMESH_BIN_DIR); for programs like the demo that exit afterwards. A
// later FindBinaries builds them again.
func RemoveBuiltBinaries() {
	binMu.Lock()
	defer binMu.Unlock()
	if bins.Dir != "" && os.Getenv("LANMESH_BIN_DIR") == "" && strings.HasPrefix(filepath.Base(bins.Dir), "lanmesh-testbed-bin-") {
		os.RemoveAll(bins.Dir)
		binDone, bins, binErr = false, Binaries{}, nil
		clear(buildErrs)
	}
}

// sweepBinDirs removes build dirs of processes that are gone.
func sweepBinDirs() {
	ms, _ := filepath.Glob(filepath.Join(os.TempDir(), "lanmesh-testbed-bin-*"))
	for _, m := range ms {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(m), "lanmesh-testbed-bin-%d", &pid); err == nil && !pidAlive(pid) {
			os.RemoveAll(m)
		}
	}
}

// Coord is a running lanmesh-coord.
type Coord struct {
	Host     *Host
	Proc     *Proc
	StateDir string
	Listen   string   // ip:port
	URL      string   // https://ip:port
	Args     []string // extra serve flags
	bin      string
}

// StartCoord runs `lanmesh-coord serve` on h at ip:443 (plus args) and
// waits until its health endpoint answers.
func StartCoord(ctx context.Context, h *Host, ip string, args ...string) (*Coord, error) {
	bin, err := binary(func(b Binaries) string { return b.Coord })
	if err != nil {
		return nil, err
	}
	dir, err := h.w.StateDir("coord")
	if err != nil {
		return nil, err
	}
	listen := net.JoinHostPort(ip, "443")
	c := &Coord{Host: h, StateDir: dir, Listen: listen, URL: "https://" + listen, Args: args, bin: bin}
	return c, c.Start(ctx)
}

// Start starts the server (again) and waits for health.
func (c *Coord) Start(ctx context.Context) error {
	if c.Proc != nil && c.Proc.Running() {
		return errors.New("testbed: coord already running")
	}
	args := append([]string{c.bin, "serve", "--listen", c.Listen, "--server-url", c.URL, "--state-dir", c.StateDir}, c.Args...)
	p, err := c.Host.Start("coord", args...)
	if err != nil {
		return err
	}
	c.Proc = p
	return c.WaitHealthy(ctx)
}

// Stop stops the server gracefully; Kill as a crash would.
func (c *Coord) Stop() { c.Proc.Stop(3 * time.Second) }
func (c *Coord) Kill() { c.Proc.Kill() }

// WaitHealthy polls /healthz from coord's own namespace until it answers
// 200, the process dies, or ctx (default 20 s) ends.
func (c *Coord) WaitHealthy(ctx context.Context) error {
	ctx, cancel := ctxOrTimeout(ctx, 20*time.Second)
	defer cancel()
	client := &http.Client{
		Timeout: time.Second,
		Transport: &http.Transport{
			DialContext: c.Host.DialContext,
			// Only liveness is checked here; agents pin the certificate
			// through the auth key's fingerprint.
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			DisableKeepAlives: true,
		},
	}
	var last error
	for {
		resp, err := client.Get(c.URL + wire.PathHealth)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		select {
		case <-c.Proc.Done():
			return fmt.Errorf("coord exited before it was healthy (%v); log %s:\n%s", c.Proc.Err(), c.Proc.LogPath, tail(c.Proc.Log(), 20))
		case <-ctx.Done():
			return fmt.Errorf("coord not healthy at %s%s: %v (log %s)", c.URL, wire.PathHealth, last, c.Proc.LogPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Admin runs `lanmesh-coord --state-dir DIR args...` on coord's host.
func (c *Coord) Admin(ctx context.Context, args ...string) (Result, error) {
	return c.Host.Run(ctx, append([]string{c.bin, "--state-dir", c.StateDir}, args...)...)
}

// CreateKey runs `keys create --json` (plus args, e.g. --reusable) and
// returns the key string. Its output is never logged (S11).
func (c *Coord) CreateKey(ctx context.Context, args ...string) (string, error) {
	r, err := c.Host.RunSecretOutput(ctx, append([]string{c.bin, "--state-dir", c.StateDir, "keys", "create", "--json"}, args...)...)
	if err != nil {
		return "", err
	}
	k := findAuthKey(r.Stdout)
	if k == "" {
		return "", errors.New("keys create --json: no lmk1.* key in its output")
	}
	return k, nil
}

// findAuthKey returns the first auth key string in JSON (or plain) output;
// the exact field name is not part of the CLI contract.
func findAuthKey(out string) string {
	var v any
	if json.Unmarshal([]byte(out), &v) == nil {
		var found string
		walkStrings(v, func(s string) {
			if found == "" {
				if _, err := wire.ParseAuthKey(s); err == nil {
					found = s
				}
			}
		})
		if found != "" {
			return found
		}
	}
	for _, f := range strings.Fields(out) {
		if _, err := wire.ParseAuthKey(f); err == nil {
			return f
		}
	}
	return ""
}

func walkStrings(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case []any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	case map[string]any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	}
}

// Agent is a running `lanmesh agent`.
type Agent struct {
	Name     string
	Host     *Host
	Proc     *Proc
	StateDir string
	Socket   string
	Args     []string // extra daemon flags
	bin      string
}

// StartAgent runs `lanmesh agent` on h and waits until its local API
// answers `status --json`.
func StartAgent(ctx context.Context, h *Host, name string, args ...string) (*Agent, error) {
	bin, err := binary(func(b Binaries) string { return b.Lanmesh })
	if err != nil {
		return nil, err
	}
	dir, err := h.w.StateDir(name)
	if err != nil {
		return nil, err
	}
	a := &Agent{Name: name, Host: h, StateDir: dir, Socket: filepath.Join(dir, "lanmesh.sock"), Args: args, bin: bin}
	return a, a.Start(ctx)
}

// Start starts the daemon (again) and waits for its socket.
func (a *Agent) Start(ctx context.Context) error {
	if err := a.StartNoWait(); err != nil {
		return err
	}
	ctx, cancel := ctxOrTimeout(ctx, 20*time.Second)
	defer cancel()
	var last error
	for {
		_, err := a.CLI(ctx, "status", "--json")
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-a.Proc.Done():
			return fmt.Errorf("agent %s exited at start (%v); log %s:\n%s", a.Name, a.Proc.Err(), a.Proc.LogPath, tail(a.Proc.Log(), 20))
		case <-ctx.Done():
			return fmt.Errorf("agent %s: local API not answering: %v (log %s)", a.Name, last, a.Proc.LogPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartNoWait starts the daemon without waiting (for tests that expect it
// to refuse to start).
func (a *Agent) StartNoWait() error {
	if a.Proc != nil && a.Proc.Running() {
		return fmt.Errorf("testbed: agent %s already running", a.Name)
	}
	args := append([]string{a.bin, "agent", "--state-dir", a.StateDir, "--socket", a.Socket}, a.Args...)
	p, err := a.Host.Start(a.Name, args...)
	if err != nil {
		return err
	}
	a.Proc = p
	return nil
}

// Stop stops the daemon gracefully.
func (a *Agent) Stop() { a.Proc.Stop(5 * time.Second) }

// Restart stops and starts the daemon.
func (a *Agent) Restart(ctx context.Context) error {
	a.Stop()
	return a.Start(ctx)
}

// CLI runs `lanmesh --socket SOCK args...` on the agent's host.
func (a *Agent) CLI(ctx context.Context, args ...string) (Result, error) {
	return a.Host.Run(ctx, append([]string{a.bin, "--socket", a.Socket}, args...)...)
}

// Up joins the mesh through coord with authKey, plus extra flags.
func (a *Agent) Up(ctx context.Context, c *Coord, authKey string, extra ...string) (Result, error) {
	args := []string{"up", "--login-server", c.URL, "--auth-key", authKey, "--hostname", a.Name, "--timeout", "20s"}
	return a.CLI(ctx, append(args, extra...)...)
}

// Status runs and parses `lanmesh status --json`.
func (a *Agent) Status(ctx context.Context) (*Status, error) {
	r, err := a.CLI(ctx, "status", "--json")
	if err != nil {
		return nil, err
	}
	return ParseStatus([]byte(r.Stdout))
}

// WaitStatus polls status until ok accepts it or ctx (default 15 s) ends;
// it returns the last status seen.
func (a *Agent) WaitStatus(ctx context.Context, what string, ok func(*Status) bool) (*Status, error) {
	ctx, cancel := ctxOrTimeout(ctx, 15*time.Second)
	defer cancel()
	var st *Status
	var last error
	for {
		s, err := a.Status(ctx)
		if err == nil {
			st = s
			if ok(s) {
				return s, nil
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("%s: waiting for %s: timed out (last error %v)", a.Name, what, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PrivateKey finds the node private key in the agent's state file (by
// matching it to the public key status reports) and returns its base64
// and hex forms, so tests can grep logs for it (S11).
func (a *Agent) PrivateKey(pub string) (b64, hexForm string, err error) {
	b, err := os.ReadFile(filepath.Join(a.StateDir, "state.json"))
	if err != nil {
		return "", "", fmt.Errorf("agent %s state: %w", a.Name, err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return "", "", fmt.Errorf("agent %s state.json: %w", a.Name, err)
	}
	walkStrings(v, func(s string) {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(raw) != 32 {
			return
		}
		p, err := curve25519.X25519(raw, curve25519.Basepoint)
		if err == nil && base64.StdEncoding.EncodeToString(p) == pub {
			b64, hexForm = s, fmt.Sprintf("%x", raw)
		}
	})
	if b64 == "" {
		return "", "", fmt.Errorf("agent %s: no private key for %s in state.json", a.Name, pub)
	}
	return b64, hexForm, nil
}

// GrepLogs returns "file: needle" for every needle found in any file under
// the world's log dir.
func (w *World) GrepLogs(needles ...string) ([]string, error) {
	var hits []string
	err := filepath.WalkDir(w.LogDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if n != "" && strings.Contains(string(b), n) {
				hits = append(hits, fmt.Sprintf("%s: contains a secret (%d chars)", filepath.Base(p), len(n)))
			}
		}
		return nil
	})
	return hits, err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
