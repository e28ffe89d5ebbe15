package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// lockedBuf collects a subprocess's output.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// buildCoord builds this command into dir.
func buildCoord(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "lanmesh-coord")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestRemoteAdminCLI runs a real coord binary (TLS on loopback, its own
// self-signed certificate) and drives it with the real CLI binary from
// "a laptop": --server with an API key from a file or the environment
// and the certificate pinned. Read keys cannot change state, a revoked
// key is refused on its next use, every use is in the audit log, and no
// key appears in coord's (debug) log or the CLI's output (S11).
func TestRemoteAdminCLI(t *testing.T) {
	tmp := t.TempDir()
	bin := buildCoord(t, tmp)
	dir := filepath.Join(tmp, "state")
	addr := freeAddr(t)
	url := "https://" + addr
	coordLog := &lockedBuf{}
	srv := exec.Command(bin, "--state-dir", dir, "serve", "--listen", addr, "--server-url", url, "--derp=false", "--verbose")
	srv.Stdout, srv.Stderr = coordLog, coordLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Signal(os.Interrupt); srv.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, "admin.sock")); err == nil {
			break
		}
		if i > 200 {
			t.Fatalf("coord did not start:\n%s", coordLog)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var cliOut []string // everything the CLI printed, for S11
	run := func(env []string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp}, env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		cliOut = append(cliOut, errb.String())
		return strings.TrimSpace(out.String() + errb.String()), code
	}
	local := func(args ...string) string {
		t.Helper()
		out, code := run(nil, append([]string{"--state-dir", dir}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
		return out
	}
	adminKey := local("apikeys", "create", "--scope", "admin", "--expiry", "90d", "--description", "laptop")
	readKey := local("apikeys", "create", "--scope", "read", "--expiry", "1h")
	fp := local("fingerprint")
	for _, k := range []string{adminKey, readKey} {
		if !strings.HasPrefix(k, "lmapi_") {
			t.Fatalf("apikeys create printed %q", k)
		}
	}
	keyFile := filepath.Join(tmp, "key")
	if err := os.WriteFile(keyFile, []byte(adminKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	remote := []string{"--server", url, "--api-key-file", keyFile, "--coord-fingerprint", fp}
	rcli := func(args ...string) (string, int) { return run(nil, append(append([]string{}, remote...), args...)...) }

	// The admin key does what the socket does, from "elsewhere" (no
	// --state-dir: the default one does not exist here).
	if out, code := rcli("users", "create", "alice"); code != 0 {
		t.Fatalf("remote users create: %d %s", code, out)
	}
	preauth, code := rcli("keys", "create", "--user", "alice")
	ak, err := wire.ParseAuthKey(preauth)
	if code != 0 || err != nil || ak.Fingerprint != fp {
		t.Fatalf("remote keys create: %d %s %v", code, preauth, err)
	}
	out, code := rcli("users", "list", "--json")
	var users []adminapi.User
	if code != 0 || json.Unmarshal([]byte(out), &users) != nil || len(users) < 2 {
		t.Fatalf("remote users list: %d %s", code, out)
	}

	// TLS: a self-signed coord without the pin is refused, and so is a
	// wrong pin; both say what to do.
	out, code = run(nil, "--server", url, "--api-key-file", keyFile, "users", "list")
	if code == 0 || !strings.Contains(out, "fingerprint") {
		t.Errorf("no pin against a self-signed coord: %d %s", code, out)
	}
	out, code = run(nil, "--server", url, "--api-key-file", keyFile, "--coord-fingerprint", strings.Repeat("A", 43), "users", "list")
	if code == 0 || !strings.Contains(out, "does not match the pinned fingerprint") {
		t.Errorf("wrong pin: %d %s", code, out)
	}
	// Key only from a file or the environment; missing: a clear error.
	if out, code = run(nil, "--server", url, "users", "list"); code == 0 || !strings.Contains(out, "LANMESH_API_KEY") {
		t.Errorf("no key: %d %s", code, out)
	}
	if out, code = run(nil, "--api-key-file", keyFile, "users", "list"); code != 2 || !strings.Contains(out, "needs --server") {
		t.Errorf("key file without server: %d %s", code, out)
	}

	// A read key, from the environment: reads work, changes are refused.
	env := []string{"LANMESH_SERVER=" + url, "LANMESH_API_KEY=" + readKey, "LANMESH_COORD_FINGERPRINT=" + fp}
	if out, code = run(env, "nodes", "list"); code != 0 {
		t.Fatalf("read key nodes list: %d %s", code, out)
	}
	if out, code = run(env, "users", "delete", "alice"); code != 1 || !strings.Contains(out, "read-only") {
		t.Fatalf("read key users delete: %d %s", code, out)
	}
	if out, code = run(env, "apikeys", "create", "--scope", "admin"); code != 1 || !strings.Contains(out, "read-only") {
		t.Fatalf("read key creating an admin key: %d %s", code, out)
	}

	// The audit log names the key, the source and the result.
	out, code = rcli("audit", "list", "--json", "--since", "1h", "--limit", "50")
	var evs []adminapi.AuditEvent
	if code != 0 || json.Unmarshal([]byte(out), &evs) != nil {
		t.Fatalf("remote audit list: %d %s", code, out)
	}
	adminID := strings.Split(adminKey, "_")[1]
	readID := strings.Split(readKey, "_")[1]
	find := func(action, actor, result string) bool {
		for _, e := range evs {
			if e.Action == action && e.Actor == actor && e.Result == result && strings.HasPrefix(e.Source, "127.0.0.1:") {
				return true
			}
		}
		return false
	}
	for _, w := range []struct{ action, actor, result string }{
		{"user.create", adminID, "ok"}, {"preauthkey.create", adminID, "ok"}, {"api.read", adminID, "ok"},
		{"api.read", readID, "ok"}, {"apikey.auth", readID, "refused"},
	} {
		if !find(w.action, w.actor, w.result) {
			t.Errorf("no audit event %+v in %s", w, out)
		}
	}
	if out, code = rcli("audit", "list", "--actor", "socket"); code != 0 || !strings.Contains(out, "apikey.create") {
		t.Errorf("audit list --actor socket: %d %s", code, out)
	}

	// Revoked: refused on the next request.
	local("apikeys", "revoke", adminID)
	if out, code = rcli("users", "list"); code != 1 || !strings.Contains(out, "revoked") {
		t.Fatalf("revoked key: %d %s", code, out)
	}
	if out = local("apikeys", "list"); !strings.Contains(out, "revoked") || !strings.Contains(out, "laptop") {
		t.Errorf("apikeys list: %s", out)
	}

	// A key file others can read is used with a warning.
	os.Chmod(keyFile, 0o644)
	if out, _ = rcli("users", "list"); !strings.Contains(out, "readable by others") {
		t.Errorf("no warning for a 0644 key file: %s", out)
	}

	// S11: no key secret in coord's debug log or in what the CLI printed
	// on stderr.
	logs := coordLog.String()
	if !strings.Contains(logs, "API key refused") {
		t.Fatalf("coord's log is not the one expected (no refusal logged):\n%s", logs)
	}
	// lmapi_ID_SECRET: the ID is hex, the secret base64url and so may hold
	// "_" itself (cutting at the last "_" once left a one-letter "secret"
	// that every line contained).
	secretOf := func(k string) string {
		_, sec, _ := strings.Cut(strings.TrimPrefix(k, "lmapi_"), "_")
		return sec
	}
	secrets := []string{secretOf(adminKey), secretOf(readKey), ak.Secret}
	for _, s := range secrets {
		if len(s) < 16 {
			t.Fatalf("secret %d characters long: too short to scan logs for", len(s))
		}
		if strings.Contains(logs, s) {
			t.Errorf("a secret reached coord's log")
		}
		for _, o := range cliOut {
			if strings.Contains(o, s) {
				t.Errorf("a secret reached the CLI's stderr: %s", o)
			}
		}
	}
}
