package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/lanmesh/lanmesh/plugins/sdk"
)

// State is where a plugin's life is.
type State string

const (
	StateStarting State = "starting" // first start not finished
	StateRunning  State = "running"
	StateBackoff  State = "restarting" // crashed or hung; waiting to start again
	// StateRefused: the plugin speaks another protocol version. Restarting
	// cannot help, so it stays down until coord restarts.
	StateRefused State = "refused"
	StateStopped State = "stopped"
)

// conn is what every kind's dispensed client offers the host.
type conn interface {
	Health(ctx context.Context) error
	Configure(ctx context.Context, settings []byte) (sdk.Info, error)
}

// Instance is one configured plugin and its process.
type Instance struct {
	Kind, Name, Path string

	kind     sdk.Kind
	settings []byte
	timeout  time.Duration
	opts     *Options
	log      *slog.Logger
	kick     chan struct{} // restart now (too many hung calls)

	mu       sync.Mutex // guards all following fields
	state    State
	err      error // why the plugin is not running
	raw      any   // dispensed client while running
	info     sdk.Info
	pid      int
	restarts int
	next     time.Time     // next start while in backoff
	startDur time.Duration // how long the last successful start took
	timeouts int           // calls in a row that missed their deadline
}

// Status is a snapshot of an Instance.
type Status struct {
	State    State
	Err      error
	Info     sdk.Info
	PID      int
	Restarts int
	// StartDuration is how long the last successful start took: process
	// start, handshake, gRPC connection and Configure.
	StartDuration time.Duration
}

// Status reports the plugin's state.
func (in *Instance) Status() Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	return Status{State: in.state, Err: in.err, Info: in.info, PID: in.pid, Restarts: in.restarts, StartDuration: in.startDur}
}

// CallTimeout is the deadline of one call to this plugin.
func (in *Instance) CallTimeout() time.Duration { return in.timeout }

// client returns the running plugin's client, or an error that says why
// there is none and what happens next.
func (in *Instance) client() (any, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	switch in.state {
	case StateRunning:
		return in.raw, nil
	case StateBackoff:
		return nil, fmt.Errorf("plugin %s/%s is not running (%v); restarting in %s", in.Kind, in.Name, in.err, time.Until(in.next).Round(time.Millisecond))
	case StateRefused:
		return nil, fmt.Errorf("plugin %s/%s refused: %v", in.Kind, in.Name, in.err)
	case StateStarting:
		return nil, fmt.Errorf("plugin %s/%s is still starting; try again in a moment", in.Kind, in.Name)
	}
	return nil, fmt.Errorf("plugin %s/%s is stopped", in.Kind, in.Name)
}

// called records how a call ended: HangLimit deadline misses in a row
// restart the plugin, since a plugin that stopped answering will not heal.
func (in *Instance) called(err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !errors.Is(err, context.DeadlineExceeded) {
		in.timeouts = 0
		return
	}
	in.timeouts++
	if in.timeouts >= in.opts.HangLimit {
		in.timeouts = 0
		select {
		case in.kick <- struct{}{}:
		default:
		}
	}
}

var versionRE = regexp.MustCompile(`(?i)plugin version: (\d+)`)

// supervise runs the plugin until ctx ends, restarting it with backoff.
func (in *Instance) supervise(ctx context.Context) {
	backoff := in.opts.MinBackoff
	for {
		started := time.Now()
		client, cmd, err := in.start(ctx)
		if err == nil {
			err = in.watch(ctx, client)
			in.mu.Lock()
			// Calls fail fast from here on, not after the kill.
			in.state, in.err, in.raw, in.pid = StateBackoff, err, nil, 0
			in.mu.Unlock()
			if ctx.Err() == nil && cmd.Process != nil {
				// Crashed, frozen or hung: a graceful stop would only wait.
				cmd.Process.Kill()
			}
			client.Kill()
		}
		if ctx.Err() != nil {
			in.setState(StateStopped, ctx.Err(), time.Time{})
			return
		}
		if m := versionRE.FindStringSubmatch(err.Error()); m != nil {
			err = fmt.Errorf("it speaks plugin protocol version %s, this coord speaks %d: install the plugin's build for this lanmesh release", m[1], sdk.ProtocolVersion)
			in.log.Error("plugin refused", "err", err)
			in.setState(StateRefused, err, time.Time{})
			return
		}
		// A plugin that ran a good while before dying starts over at the
		// shortest delay; one that keeps dying waits longer each time.
		if time.Since(started) > time.Minute {
			backoff = in.opts.MinBackoff
		}
		next := time.Now().Add(backoff)
		in.log.Warn("plugin down; restarting", "err", err, "in", backoff)
		in.setState(StateBackoff, err, next)
		select {
		case <-ctx.Done():
			in.setState(StateStopped, ctx.Err(), time.Time{})
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, in.opts.MaxBackoff)
		in.mu.Lock()
		in.restarts++
		in.mu.Unlock()
	}
}

func (in *Instance) setState(s State, err error, next time.Time) {
	in.mu.Lock()
	in.state, in.err, in.next = s, err, next
	in.mu.Unlock()
}

// start launches the process, negotiates the protocol and configures it.
func (in *Instance) start(ctx context.Context) (*goplugin.Client, *exec.Cmd, error) {
	t0 := time.Now()
	cmd := exec.Command(in.Path)
	// Coord's environment holds secrets (relay token): the plugin gets
	// none of it, only what a program needs to run.
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "TMPDIR=" + os.TempDir()}
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: in.kind.Versions,
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     in.opts.StartTimeout,
		Logger:           &hclogAdapter{log: in.log, name: in.Name},
		Stderr:           &stderrLog{log: in.log},
		// What the plugin writes to os.Stdout/os.Stderr after Serve
		// arrives over go-plugin's stdio stream.
		SyncStdout: &stderrLog{log: in.log},
		SyncStderr: &stderrLog{log: in.log},
	})
	fail := func(err error) (*goplugin.Client, *exec.Cmd, error) {
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
		client.Kill()
		return nil, nil, err
	}
	rpc, err := client.Client()
	if err != nil {
		return fail(fmt.Errorf("start %s: %w", in.Path, err))
	}
	raw, err := rpc.Dispense(in.kind.Name)
	if err != nil {
		return fail(fmt.Errorf("dispense %s: %w", in.kind.Name, err))
	}
	c, ok := raw.(conn)
	if !ok {
		return fail(fmt.Errorf("kind %s: client %T lacks Health/Configure", in.kind.Name, raw))
	}
	cctx, cancel := context.WithTimeout(ctx, in.opts.StartTimeout)
	info, err := c.Configure(cctx, in.settings)
	cancel()
	if err != nil {
		return fail(fmt.Errorf("configure: %w", err))
	}
	pid := 0
	if rc := client.ReattachConfig(); rc != nil {
		pid = rc.Pid
	}
	d := time.Since(t0)
	in.mu.Lock()
	in.state, in.err, in.raw, in.info, in.pid, in.startDur, in.timeouts = StateRunning, nil, raw, info, pid, d, 0
	in.mu.Unlock()
	in.log.Info("plugin running", "pid", pid, "start", d.Round(time.Microsecond), "protocol", client.NegotiatedVersion())
	return client, cmd, nil
}

// watch returns why the running plugin must be restarted.
func (in *Instance) watch(ctx context.Context, client *goplugin.Client) error {
	c := in.raw.(conn)
	exitPoll := time.NewTicker(100 * time.Millisecond)
	defer exitPoll.Stop()
	health := time.NewTicker(in.opts.HealthInterval)
	defer health.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-in.kick:
			return fmt.Errorf("%d calls in a row got no answer within %s", in.opts.HangLimit, in.timeout)
		case <-exitPoll.C:
			if client.Exited() {
				return errors.New("plugin process exited")
			}
		case <-health.C:
			hctx, cancel := context.WithTimeout(ctx, min(in.timeout, in.opts.HealthInterval))
			err := c.Health(hctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				if client.Exited() {
					return errors.New("plugin process exited")
				}
				return fmt.Errorf("health check failed: %s", strings.TrimSpace(err.Error()))
			}
		}
	}
}
