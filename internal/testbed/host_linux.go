package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// Host is one network namespace: a router, a LAN host, a NAT box, coord.
type Host struct {
	Name string // short name, e.g. "router-a"
	NS   string // namespace name, e.g. lmtb123x1-router-a
	w    *World
}

// World returns the world the host belongs to.
func (h *Host) World() *World { return h.w }

// ip runs `ip -n NS args...`.
func (h *Host) ip(args ...string) error {
	return h.w.ip(append([]string{"-n", h.NS}, args...)...)
}

// Sysctl sets a sysctl inside the namespace (net.* is per namespace).
func (h *Host) Sysctl(key, value string) error {
	_, err := h.Run(context.Background(), "sysctl", "-qw", key+"="+value)
	return err
}

// AddRoute adds a route, e.g. AddRoute("default", "198.18.0.1").
func (h *Host) AddRoute(dst, via string) error {
	args := []string{"route", "add", dst, "via", via}
	if strings.Contains(via, ":") {
		args = append([]string{"-6"}, args...)
	}
	return h.ip(args...)
}

// Nft loads an nftables ruleset into the namespace.
func (h *Host) Nft(ruleset string) error {
	cmd := exec.Command("ip", "netns", "exec", h.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testbed: nft in %s: %v: %s", h.Name, err, bytes.TrimSpace(b))
	}
	h.w.logf("[%s] nft -f - <<\n%s", h.Name, ruleset)
	return nil
}

// Result is the outcome of a finished command.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
	Duration       time.Duration
}

// Run runs a command in the namespace and waits (default timeout 60 s).
// The command line, with auth keys redacted, and its output go to
// commands.log. A non-zero exit is an error that includes stderr.
func (h *Host) Run(ctx context.Context, args ...string) (Result, error) {
	return h.run(ctx, false, args)
}

// RunSecretOutput is Run for commands whose stdout holds a secret (e.g.
// `keys create`): stdout is returned but never logged (S11).
func (h *Host) RunSecretOutput(ctx context.Context, args ...string) (Result, error) {
	return h.run(ctx, true, args)
}

func (h *Host) run(ctx context.Context, secret bool, args []string) (Result, error) {
	if len(args) == 0 {
		return Result{}, errors.New("testbed: Run: no command")
	}
	ctx, cancel := ctxOrTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String(), Duration: time.Since(start)}
	if cmd.ProcessState != nil {
		r.ExitCode = cmd.ProcessState.ExitCode()
	}
	shown := r.Stdout
	if secret {
		shown = "(stdout withheld: it holds a secret)\n"
	}
	h.w.logf("[%s] $ %s  (exit %d, %v)\n%s%s", h.Name, RedactArgs(args), r.ExitCode, r.Duration.Round(time.Millisecond), indent(shown), indent(r.Stderr))
	if err != nil {
		return r, fmt.Errorf("%s on %s: %w: %s", RedactArgs(args), h.Name, err, strings.TrimSpace(r.Stderr))
	}
	return r, nil
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

// RedactArgs renders a command line with any auth key redacted.
func RedactArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if k, err := wire.ParseAuthKey(a); err == nil {
			out[i] = k.Redacted()
		} else if strings.HasPrefix(a, "lmk1.") {
			out[i] = "lmk1.REDACTED"
		}
	}
	return strings.Join(out, " ")
}

// Proc is a long-running process inside a host.
type Proc struct {
	Name    string
	Host    *Host
	LogPath string // stdout and stderr, interleaved
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	logf    *os.File
}

// Start runs a long-lived command in the namespace; its output goes to
// LogDir/<name>.log (a restart gets <name>.2.log). World.Close stops it.
func (h *Host) Start(name string, args ...string) (*Proc, error) {
	path := h.w.logPath(name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testbed: log for %s: %w", name, err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: a stop reaches any children too. No Pdeathsig: it
	// fires when the forking OS thread exits, which Do makes happen.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &Proc{Name: name, Host: h, LogPath: path, cmd: cmd, done: make(chan struct{}), logf: f}
	h.w.mu.Lock()
	if h.w.closed {
		h.w.mu.Unlock()
		f.Close()
		return nil, errors.New("testbed: world is closed")
	}
	if err := cmd.Start(); err != nil {
		h.w.mu.Unlock()
		f.Close()
		return nil, fmt.Errorf("testbed: start %s on %s: %w", name, h.Name, err)
	}
	h.w.procs = append(h.w.procs, p)
	h.w.mu.Unlock()
	h.w.logf("[%s] started %s (pid %d, log %s): %s", h.Name, name, cmd.Process.Pid, filepath.Base(path), RedactArgs(args))
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (`ip netns exec` execs the command in place).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the exit error once Done is closed.
func (p *Proc) Err() error { <-p.done; return p.err }

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Stop sends SIGTERM, then SIGKILL after grace, and waits for the exit.
func (p *Proc) Stop(grace time.Duration) {
	if !p.Running() {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Kill stops the process at once, as a crash would.
func (p *Proc) Kill() {
	if p.Running() {
		_ = p.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// Log returns what the process has written so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Do runs fn on an OS thread inside the namespace. Sockets fn creates stay
// in the namespace when used from any goroutine later. The thread is
// thrown away afterwards (the goroutine exits locked), so the namespace
// switch never leaks into the rest of the program.
func (h *Host) Do(fn func() error) error {
	f, err := os.Open(filepath.Join(netnsDir, h.NS))
	if err != nil {
		return fmt.Errorf("testbed: open netns %s: %w", h.NS, err)
	}
	defer f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if _, _, e := syscall.RawSyscall(uintptr(sysSetns), f.Fd(), syscall.CLONE_NEWNET, 0); e != 0 {
			errc <- fmt.Errorf("testbed: setns %s: %w", h.NS, e)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// DialContext opens a connection from inside the namespace.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen opens a stream listener inside the namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := h.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacket opens a packet socket inside the namespace.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := h.Do(func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Ping sends count echo requests to dst and returns how many answered.
func (h *Host) Ping(ctx context.Context, dst string, count int, wait time.Duration) (int, error) {
	secs := fmt.Sprintf("%.1f", wait.Seconds())
	r, err := h.Run(ctx, "ping", "-n", "-q", "-c", fmt.Sprint(count), "-W", secs, "-i", "0.2", dst)
	n := parsePingReceived(r.Stdout)
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = errors.New("no replies")
	}
	return 0, fmt.Errorf("ping %s from %s: %w", dst, h.Name, err)
}

// parsePingReceived reads "3 packets transmitted, 3 received" from ping -q.
func parsePingReceived(out string) int {
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, " received"); i > 0 {
			parts := strings.Split(line[:i], ",")
			var n int
			fmt.Sscan(strings.TrimSpace(parts[len(parts)-1]), &n)
			return n
		}
	}
	return 0
}
