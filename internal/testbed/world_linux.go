package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// TB is the part of testing.TB a world needs; the demo passes nil instead
// of importing package testing.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
}

// netnsDir is where `ip netns` keeps its bind mounts.
const netnsDir = "/var/run/netns"

// namePrefix starts every namespace this package makes. The creating pid
// is part of the name so that a sweep can tell a crashed run's leftovers
// from a live parallel run's namespaces.
const namePrefix = "lmtb"

var (
	worldSeq atomic.Int64
	staleRe  = regexp.MustCompile(`^` + namePrefix + `(\d+)x\d+-`)
)

// SkipUnlessRoot skips a test that needs to create namespaces.
// Under CI=true it fails instead (internal/testenv).
func SkipUnlessRoot(t testenv.TB) {
	t.Helper()
	testenv.RequireRoot(t, "testbed: network namespaces")
	testenv.RequireTool(t, "ip", "iproute2")
}

// World is one set of namespaces and the processes running in them.
type World struct {
	Prefix string // lmtb<pid>x<n>, starts every namespace name
	Dir    string // scratch: logs/ and state/
	LogDir string

	mu     sync.Mutex
	hosts  map[string]*Host
	order  []*Host
	procs  []*Proc
	logs   map[string]int
	closed bool
	keep   bool
	cmdLog *os.File
}

// Options tune Open.
type Options struct {
	// Dir holds logs and state; a new temp dir when empty.
	Dir string
	// KeepDir leaves Dir on Close (always kept when the test failed or
	// LANMESH_KEEP_LOGS is set).
	KeepDir bool
}

// New opens a world that is closed by t.Cleanup; it fails the test on error.
func New(t TB) *World {
	t.Helper()
	w, err := Open(Options{})
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			w.keep = true
			t.Logf("testbed: logs kept in %s", w.LogDir)
		}
		if err := w.Close(); err != nil {
			t.Logf("testbed: close: %v", err)
		}
	})
	return w
}

// Open makes an empty world after sweeping stale namespaces of dead runs.
func Open(opt Options) (*World, error) {
	if err := Sweep(); err != nil {
		return nil, err
	}
	prefix := fmt.Sprintf("%s%dx%d", namePrefix, os.Getpid(), worldSeq.Add(1))
	dir := opt.Dir
	if dir == "" {
		var err error
		dir, err = os.MkdirTemp("", prefix+"-")
		if err != nil {
			return nil, fmt.Errorf("testbed: scratch dir: %w", err)
		}
	}
	w := &World{
		Prefix: prefix,
		Dir:    dir,
		LogDir: filepath.Join(dir, "logs"),
		hosts:  map[string]*Host{},
		logs:   map[string]int{},
		keep:   opt.KeepDir || os.Getenv("LANMESH_KEEP_LOGS") != "",
	}
	if err := os.MkdirAll(w.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("testbed: log dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(w.LogDir, "commands.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testbed: command log: %w", err)
	}
	w.cmdLog = f
	return w, nil
}

// Sweep deletes namespaces left by testbed runs whose process is gone.
func Sweep() error {
	sweepBinDirs()
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("testbed: sweep: %w", err)
	}
	var errs []error
	for _, e := range ents {
		m := staleRe.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pidAlive(pid) {
			continue
		}
		slog.Info("testbed: removing stale namespace", "netns", e.Name(), "dead_pid", pid)
		if err := deleteNetns(e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// deleteNetns kills whatever still runs inside ns, then deletes it.
func deleteNetns(ns string) error {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if b, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
		if _, statErr := os.Stat(filepath.Join(netnsDir, ns)); errors.Is(statErr, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("testbed: delete netns %s: %v: %s", ns, err, bytes.TrimSpace(b))
	}
	return nil
}

// Namespaces lists the namespaces of this world that exist right now.
func (w *World) Namespaces() []string {
	ents, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), w.Prefix+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// Host returns the host called name, or nil.
func (w *World) Host(name string) *Host {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hosts[name]
}

// AddHost makes a new namespace with loopback up.
func (w *World) AddHost(name string) (*Host, error) {
	if !validName(name) {
		return nil, fmt.Errorf("testbed: host name %q: want 1-20 of [a-z0-9-]", name)
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, errors.New("testbed: world is closed")
	}
	if w.hosts[name] != nil {
		w.mu.Unlock()
		return nil, fmt.Errorf("testbed: host %q exists", name)
	}
	h := &Host{Name: name, NS: w.Prefix + "-" + name, w: w}
	w.hosts[name] = h
	w.order = append(w.order, h)
	w.mu.Unlock()

	if err := w.ip("netns", "add", h.NS); err != nil {
		return nil, err
	}
	if err := h.ip("link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	// Fresh namespaces do not forward; routers and NAT boxes turn it on.
	// Addresses are added with nodad so IPv6 works without a 2 s wait.
	return h, nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 20 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Close kills every process and deletes every namespace of the world.
// It is safe to call more than once.
func (w *World) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	procs := append([]*Proc(nil), w.procs...)
	hosts := append([]*Host(nil), w.order...)
	w.mu.Unlock()

	var errs []error
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop(2 * time.Second) }()
	}
	wg.Wait()
	for i := len(hosts) - 1; i >= 0; i-- {
		if err := deleteNetns(hosts[i].NS); err != nil {
			errs = append(errs, err)
		}
	}
	if w.cmdLog != nil {
		w.cmdLog.Close()
	}
	if !w.keep && len(errs) == 0 {
		os.RemoveAll(w.Dir)
	}
	return errors.Join(errs...)
}

// KeepLogs makes Close leave the log dir (for the demo and failed runs).
func (w *World) KeepLogs() { w.mu.Lock(); w.keep = true; w.mu.Unlock() }

// ip runs an ip(8) command in the root namespace (only netns add/del and
// link creation that lands directly in world namespaces).
func (w *World) ip(args ...string) error {
	b, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testbed: ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(b))
	}
	return nil
}

// logf appends a line to commands.log.
func (w *World) logf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmdLog != nil {
		fmt.Fprintf(w.cmdLog, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
	}
}

// logPath returns a fresh log file path for a process called name.
func (w *World) logPath(name string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.logs[name]++
	if n := w.logs[name]; n > 1 {
		return filepath.Join(w.LogDir, fmt.Sprintf("%s.%d.log", name, n))
	}
	return filepath.Join(w.LogDir, name+".log")
}

// StateDir returns (and creates) a per-name state directory outside LogDir.
func (w *World) StateDir(name string) (string, error) {
	d := filepath.Join(w.Dir, "state", name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", fmt.Errorf("testbed: state dir: %w", err)
	}
	return d, nil
}

// ctxOrTimeout gives commands a deadline when the caller gave none.
func ctxOrTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

func runIP(args ...string) ([]byte, error) { return exec.Command("ip", args...).CombinedOutput() }
