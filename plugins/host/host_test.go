package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/plugins/sdk"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// pluginDir builds testdata/testplugin once (as lanmesh-idp-test and, for
// the version test, lanmesh-idp-v2) and returns the directory.
func pluginDir(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "lanmesh-plugins-test")
		if buildErr != nil {
			return
		}
		out := filepath.Join(buildDir, "lanmesh-idp-test")
		cmd := exec.Command("go", "build", "-o", out, "./testdata/testplugin")
		var b []byte
		if b, buildErr = cmd.CombinedOutput(); buildErr != nil {
			buildErr = errors.New(buildErr.Error() + ": " + string(b))
			return
		}
		buildErr = os.Link(out, filepath.Join(buildDir, "lanmesh-idp-v2"))
	})
	if buildErr != nil {
		t.Fatalf("building test plugin: %v", buildErr)
	}
	return buildDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// syncBuf is a log sink tests can read while plugins write to it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startHost(t *testing.T, cfg string, tune func(*Options)) (*Host, *syncBuf) {
	t.Helper()
	c, err := ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	opts := Options{
		Dir: pluginDir(t), Config: c, Kinds: []sdk.Kind{sdk.IdPKind},
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
	}
	if tune != nil {
		tune(&opts)
	}
	h, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		t0 := time.Now()
		h.Close()
		t.Logf("close took %s", time.Since(t0))
		if t.Failed() {
			t.Logf("host log:\n%s", logs)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return h, logs
}

func waitState(t *testing.T, in *Instance, want State, timeout time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := in.Status()
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin state %s (err %v), want %s", st.State, st.Err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func begin(p IdP, state string) (sdk.BeginResponse, error) {
	return p.BeginLogin(context.Background(), sdk.BeginRequest{RedirectURL: "https://coord.test/callback", State: state, Nonce: "n1"})
}

// TestPluginRuns: a real plugin executable starts, answers, round-trips
// identities and errors, and its log lines (even hostile ones) land in the
// host's slog log. It also measures the start-up cost.
func TestPluginRuns(t *testing.T) {
	h, logs := startHost(t, `{"plugins": [{"kind": "idp", "name": "test", "settings": {"garbage": true}}]}`, nil)
	p, ok := h.IdP("test")
	if !ok {
		t.Fatal("no idp test")
	}
	st := waitState(t, p.Instance(), StateRunning, 10*time.Second)
	t.Logf("plugin start-up (exec, handshake, mTLS, gRPC, Configure): %s", st.StartDuration)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.PID)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				t.Logf("plugin process %s", strings.Join(strings.Fields(l), " "))
			}
		}
	}
	if p.DisplayName() != "Test IdP" {
		t.Errorf("display name %q", p.DisplayName())
	}
	resp, err := begin(p, "s1")
	if err != nil || resp.AuthURL != "https://idp.test/auth?state=s1" || string(resp.Session) != "n1" {
		t.Fatalf("BeginLogin = %+v, %v", resp, err)
	}
	id, err := p.CompleteLogin(context.Background(), sdk.CompleteRequest{State: "s1", Nonce: "n1", Session: resp.Session, Query: map[string][]string{"user": {"ann"}}})
	if err != nil || id.Subject != "ann" || len(id.Groups) != 1 || id.Groups[0] != "eng" {
		t.Fatalf("CompleteLogin = %+v, %v", id, err)
	}
	_, err = p.CompleteLogin(context.Background(), sdk.CompleteRequest{Nonce: "other", Session: resp.Session})
	if !errors.Is(err, sdk.ErrBadCallback) || !strings.Contains(err.Error(), "nonce mismatch") {
		t.Errorf("nonce mismatch: err %v, want ErrBadCallback with the plugin's message", err)
	}
	if _, err := p.Refresh(context.Background(), sdk.Identity{Subject: "gone"}); !errors.Is(err, sdk.ErrRefused) {
		t.Errorf("Refresh(gone) err %v, want ErrRefused", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "msg=configured") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	for _, want := range []string{"level=INFO msg=configured plugin=idp/test", `msg="plain text line" plugin=idp/test`} {
		if !strings.Contains(out, want) {
			t.Errorf("host log lacks %q:\n%s", want, out)
		}
	}
}

// TestPluginCrashRestarts: a plugin that dies is restarted, each time
// after a longer delay, and calls in between fail with a clear message.
func TestPluginCrashRestarts(t *testing.T) {
	h, _ := startHost(t, `{"plugins": [{"kind": "idp", "name": "test"}]}`, func(o *Options) { o.MinBackoff = 200 * time.Millisecond })
	p, _ := h.IdP("test")
	waitState(t, p.Instance(), StateRunning, 10*time.Second)
	var gaps []time.Duration
	for i := range 2 {
		pid := p.Instance().Status().PID
		if _, err := begin(p, "crash"); err == nil {
			t.Fatal("BeginLogin(crash) succeeded")
		}
		t0 := time.Now()
		waitState(t, p.Instance(), StateBackoff, 5*time.Second)
		_, err := begin(p, "s")
		if err == nil || !strings.Contains(err.Error(), "is not running (plugin process exited); restarting in") {
			t.Errorf("call while down: err %v", err)
		}
		st := waitState(t, p.Instance(), StateRunning, 10*time.Second)
		gaps = append(gaps, time.Since(t0))
		if st.Restarts != i+1 || st.PID == pid {
			t.Errorf("after crash %d: restarts %d pid %d (was %d)", i+1, st.Restarts, st.PID, pid)
		}
		if _, err := begin(p, "s"); err != nil {
			t.Errorf("after restart: %v", err)
		}
	}
	// Backoff doubles: 200 ms, then 400 ms.
	if gaps[0] < 200*time.Millisecond || gaps[1] < 400*time.Millisecond {
		t.Errorf("restart delays %v, want >= 200ms then >= 400ms", gaps)
	}
	t.Logf("restart delays after crashes: %v", gaps)
}

// TestPluginHangContained: a call the plugin never answers ends at the
// call deadline; enough of them in a row restart the plugin.
func TestPluginHangContained(t *testing.T) {
	h, _ := startHost(t, `{"plugins": [{"kind": "idp", "name": "test", "call_timeout": "300ms"}]}`, func(o *Options) { o.HangLimit = 2 })
	p, _ := h.IdP("test")
	waitState(t, p.Instance(), StateRunning, 10*time.Second)
	for range 2 {
		t0 := time.Now()
		_, err := begin(p, "hang")
		d := time.Since(t0)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "got no answer within 300ms") {
			t.Fatalf("hung call: err %v", err)
		}
		if d > 2*time.Second {
			t.Errorf("hung call took %s, deadline 300ms", d)
		}
	}
	waitState(t, p.Instance(), StateBackoff, 5*time.Second)
	st := waitState(t, p.Instance(), StateRunning, 10*time.Second)
	if st.Restarts != 1 {
		t.Errorf("restarts %d after hangs, want 1", st.Restarts)
	}
	if _, err := begin(p, "s"); err != nil {
		t.Errorf("after restart: %v", err)
	}
}

// TestPluginFrozenRestarted: a plugin that stops answering altogether
// (SIGSTOP) fails its health check and is replaced.
func TestPluginFrozenRestarted(t *testing.T) {
	h, _ := startHost(t, `{"plugins": [{"kind": "idp", "name": "test", "call_timeout": "300ms"}]}`, func(o *Options) { o.HealthInterval = 200 * time.Millisecond })
	p, _ := h.IdP("test")
	st := waitState(t, p.Instance(), StateRunning, 10*time.Second)
	t.Logf("pid %d", st.PID)
	if err := syscall.Kill(st.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(st.PID, syscall.SIGKILL)
	waitState(t, p.Instance(), StateBackoff, 5*time.Second)
	if err := p.Instance().Status().Err; err == nil || !strings.Contains(err.Error(), "health check failed") {
		t.Errorf("down because %v, want a failed health check", err)
	}
	st2 := waitState(t, p.Instance(), StateRunning, 15*time.Second)
	if st2.PID == st.PID {
		t.Error("same pid after restart")
	}
}

// TestPluginWrongVersionRefused: a plugin speaking protocol version 2 is
// refused with a message naming both versions, and not restarted.
func TestPluginWrongVersionRefused(t *testing.T) {
	h, _ := startHost(t, `{"plugins": [{"kind": "idp", "name": "future", "executable": "lanmesh-idp-v2"}]}`, nil)
	p, _ := h.IdP("future")
	st := waitState(t, p.Instance(), StateRefused, 10*time.Second)
	want := "speaks plugin protocol version 2, this coord speaks 1"
	if st.Err == nil || !strings.Contains(st.Err.Error(), want) {
		t.Fatalf("refusal %v, want %q", st.Err, want)
	}
	_, err := begin(p, "s")
	if err == nil || !strings.Contains(err.Error(), "plugin idp/future refused: ") || !strings.Contains(err.Error(), want) {
		t.Errorf("call to refused plugin: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if st := p.Instance().Status(); st.State != StateRefused || st.Restarts != 0 {
		t.Errorf("refused plugin: state %s restarts %d", st.State, st.Restarts)
	}
}

// TestPluginConfigureFails: a plugin refusing its settings is not running,
// and the error names the plugin's reason.
func TestPluginConfigureFails(t *testing.T) {
	h, _ := startHost(t, `{"plugins": [{"kind": "idp", "name": "test", "settings": {"fail": "issuer missing"}}]}`, nil)
	p, _ := h.IdP("test")
	_, err := begin(p, "s")
	if err == nil || !strings.Contains(err.Error(), "settings: issuer missing") {
		t.Errorf("err %v, want the plugin's configure error", err)
	}
}

func TestStartChecksExecutables(t *testing.T) {
	dir := t.TempDir()
	ww := filepath.Join(dir, "lanmesh-idp-ww")
	os.WriteFile(ww, []byte("#!/bin/sh\n"), 0o777)
	os.Chmod(ww, 0o777)
	for _, tc := range []struct{ cfg, want string }{
		{`{"plugins": [{"kind": "idp", "name": "nope"}]}`, "lanmesh-idp-nope: no such file"},
		{`{"plugins": [{"kind": "idp", "name": "ww"}]}`, "writable by everyone"},
		{`{"plugins": [{"kind": "dns", "name": "x"}]}`, `unknown kind "dns"; this coord hosts [idp]`},
	} {
		c, err := ParseConfig([]byte(tc.cfg))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Start(context.Background(), Options{Dir: dir, Config: c, Kinds: []sdk.Kind{sdk.IdPKind}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
