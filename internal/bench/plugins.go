package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/lanmesh/lanmesh/plugins/host"
	"github.com/lanmesh/lanmesh/plugins/sdk"
)

// PluginsOptions configures the plugin start-up benchmark.
type PluginsOptions struct {
	BinDir string // holds lanmesh-idp-local (make build)
	Runs   int    // cold starts and crash restarts measured; default 10
}

// PluginsResult is what one plugin start-up run measured.
type PluginsResult struct {
	Plugin   string
	Start    Sample // ms: exec, handshake, mTLS, gRPC connection and Configure (host.Status.StartDuration)
	Restart  Sample // ms: from kill -9 of the plugin to it running again (includes the host's first backoff)
	Backoff  time.Duration
	RSS      Sample // bytes: the plugin process's VmRSS once running
	HostRSS  uint64 // bytes: this process's VmHWM at the end (the host side, for scale)
	Err      error
	Attempts int
}

// RunPlugins starts the real local-users IdP plugin executable through
// plugins/host, the way coord does, Runs times from cold, and kills it Runs
// times to time the restart. The OIDC plugin is not measured here: its
// Configure needs a reachable OpenID Provider (plugins/e2e starts one).
func RunPlugins(ctx context.Context, o PluginsOptions) PluginsResult {
	if o.Runs <= 0 {
		o.Runs = 10
	}
	r := PluginsResult{Plugin: "lanmesh-idp-local", Backoff: 100 * time.Millisecond}
	r.Err = runPlugins(ctx, o, &r)
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		r.HostRSS = parseStatusKB(b, "VmHWM:")
	}
	return r
}

func runPlugins(ctx context.Context, o PluginsOptions, r *PluginsResult) error {
	src := filepath.Join(o.BinDir, r.Plugin)
	exe, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("%s: %w (run make build first)", src, err)
	}
	dir, err := os.MkdirTemp("", "lanmesh-bench-plugins-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, r.Plugin), exe, 0o755); err != nil {
		return err
	}
	users := filepath.Join(dir, "users.json")
	hash, err := bcrypt.GenerateFromPassword([]byte("bench-only password"), bcrypt.MinCost)
	if err != nil {
		return err
	}
	if err := os.WriteFile(users, fmt.Appendf(nil, `[{"username":"ann","password_hash":%q}]`, hash), 0o600); err != nil {
		return err
	}
	cfg, err := host.ParseConfig(fmt.Appendf(nil, `{"plugins": [{"kind": "idp", "name": "local", "settings": {"users_file": %q}}]}`, users))
	if err != nil {
		return err
	}
	for i := 0; i < o.Runs; i++ {
		if err := onePluginRun(ctx, dir, cfg, r); err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
	}
	return nil
}

// onePluginRun starts a host (a cold start of the plugin), waits for the
// plugin, reads its RSS, kills it and times the restart.
func onePluginRun(ctx context.Context, dir string, cfg host.Config, r *PluginsResult) error {
	r.Attempts++
	h, err := host.Start(ctx, host.Options{Dir: dir, Config: cfg, Kinds: []sdk.Kind{sdk.IdPKind}, MinBackoff: r.Backoff, HealthInterval: time.Hour})
	if err != nil {
		return err
	}
	defer h.Close()
	in, ok := h.Get("idp", "local")
	if !ok {
		return fmt.Errorf("no idp/local instance")
	}
	st, err := waitPlugin(ctx, in, -1)
	if err != nil {
		return err
	}
	r.Start = append(r.Start, float64(st.StartDuration)/float64(time.Millisecond))
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.PID)); err == nil {
		r.RSS = append(r.RSS, float64(parseStatusKB(b, "VmRSS:")))
	}
	killed := time.Now()
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill plugin: %w", err)
	}
	if _, err := waitPlugin(ctx, in, st.PID); err != nil {
		return fmt.Errorf("after kill -9: %w", err)
	}
	r.Restart = append(r.Restart, float64(time.Since(killed))/float64(time.Millisecond))
	return nil
}

// waitPlugin waits until the instance runs with a process other than
// oldPID (-1: any), for at most 30 s.
func waitPlugin(ctx context.Context, in *host.Instance, oldPID int) (host.Status, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := in.Status()
		if st.State == host.StateRunning && st.PID != oldPID && st.PID != 0 {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("plugin not running after 30 s: state %s, err %v", st.State, st.Err)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// WritePluginsReport renders bench/results/plugins.md.
func WritePluginsReport(w io.Writer, r PluginsResult) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Plugin start-up\n\n")
	fmt.Fprintf(&b, "`lanmesh-bench -only plugins`: coord's plugin host (plugins/host) starts the real `%s` executable "+
		"(the local-users IdP plugin) from a plugins directory, as `lanmesh-coord serve` does, %d times from cold. "+
		"**Start** is process start, go-plugin handshake, mTLS, gRPC connection and the `Configure` call (host.Status.StartDuration). "+
		"**Restart** is from `kill -9` of the plugin to it answering again, including the host's first backoff (%v here; coord's default is 250 ms). "+
		"The OIDC plugin is not in this table: its Configure fetches the provider's discovery document, so its start-up is the provider's round trip on top of this.\n\n",
		r.Plugin, len(r.Start), r.Backoff)
	if r.Err != nil {
		fmt.Fprintf(&b, "**Failed** after %d run(s): %v\n\n", r.Attempts, r.Err)
	}
	t := Table{Header: []string{"what", "median", "min", "max", "runs"}}
	ms := func(s Sample) []string {
		return []string{fmt.Sprintf("%.1f ms", s.Median()), fmt.Sprintf("%.1f ms", s.Min()), fmt.Sprintf("%.1f ms", s.Max()), fmt.Sprint(len(s))}
	}
	t.Add(append([]string{"start (cold)"}, ms(r.Start)...)...)
	t.Add(append([]string{"restart after kill -9"}, ms(r.Restart)...)...)
	t.Add("plugin VmRSS once running", MiB(int64(r.RSS.Median())), MiB(int64(r.RSS.Min())), MiB(int64(r.RSS.Max())), fmt.Sprint(len(r.RSS)))
	if _, err := t.WriteTo(&b); err != nil {
		return err
	}
	fmt.Fprintf(&b, "\nThe host process (lanmesh-bench standing in for coord) peaked at %s.\n", MiB(int64(r.HostRSS)))
	_, err := w.Write(b.Bytes())
	return err
}
