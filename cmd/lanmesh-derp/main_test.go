package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/derp/stun"
	"github.com/lanmesh/lanmesh/internal/key"
)

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lanmesh-derp")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// The real binary relays between two allowed nodes with a pinned
// self-signed certificate, refuses a node coord does not know (S9), and
// answers STUN.
func TestBinaryEndToEnd(t *testing.T) {
	bin := buildBinary(t)
	a, b, stranger := key.NewNode(), key.NewNode(), key.NewNode()
	coord := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok-123" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		var req derp.VerifyRequest
		json.NewDecoder(r.Body).Decode(&req)
		json.NewEncoder(w).Encode(derp.VerifyResponse{Allowed: req.NodeKey == a.Public() || req.NodeKey == b.Public()})
	}))
	defer coord.Close()

	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	os.WriteFile(tokFile, []byte("tok-123\n"), 0o600)
	stunPort := freeUDPPort(t)
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--stun-port", strconv.Itoa(stunPort),
		"--state-dir", filepath.Join(dir, "state"), "--verify-url", coord.URL, "--verify-token-file", tokFile)
	cmd.Stderr = &stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	info := map[string]string{}
	sc := bufio.NewScanner(stdout)
	for len(info) < 4 && sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		info[k] = v
	}
	if info["relay"] == "" || info["fingerprint"] == "" || info["stun"] == "" {
		t.Fatalf("startup output %v; stderr:\n%s", info, stderr.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ca, err := derp.Connect(ctx, info["relay"], a, info["fingerprint"])
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := derp.Connect(ctx, info["relay"], b, info["fingerprint"])
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if ca.ServerKey().String() != info["relay key"] {
		t.Fatalf("server key %s, printed %s", ca.ServerKey(), info["relay key"])
	}
	if err := ca.Send(b.Public(), []byte("hello b")); err != nil {
		t.Fatal(err)
	}
	src, pkt, err := cb.Recv()
	if err != nil || src != a.Public() || string(pkt) != "hello b" {
		t.Fatalf("got %s %q %v", src.ShortString(), pkt, err)
	}
	if c, err := derp.Connect(ctx, info["relay"], stranger, info["fingerprint"]); err == nil {
		c.Close()
		t.Fatal("relay accepted a key coord does not know")
	}

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mapped, _, err := stun.Request(ctx, conn, netip.MustParseAddrPort(info["stun"]))
	if err != nil || mapped != conn.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("STUN: %v %v", mapped, err)
	}

	// The fingerprint subcommand prints the same pin from the state dir.
	out, err := exec.Command(bin, "fingerprint", "--state-dir", filepath.Join(dir, "state")).Output()
	if err != nil || strings.TrimSpace(string(out)) != info["fingerprint"] {
		t.Fatalf("fingerprint: %q %v", out, err)
	}
	// No secrets in the logs (S11).
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if strings.Contains(stderr.String(), "tok-123") {
		t.Fatal("verifier token in the logs")
	}
}

func TestRefusesOpenRelayByDefault(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"--listen", "127.0.0.1:0", "--stun-port", "0", "--state-dir", t.TempDir()}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "verify-url") {
		t.Fatalf("exit %d, stderr %q: want a refusal naming --verify-url", code, errb.String())
	}
	if code := run([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "Example:") {
		t.Fatalf("--help: exit %d", code)
	}
}

func TestWatchURLAndFlags(t *testing.T) {
	for _, tt := range []struct{ verify, watch, want, err string }{
		{"https://coord.example/v1/derp/verify", "", "https://coord.example/v1/derp/watch", ""},
		{"https://auth.example/check", "", "", ""}, // not coord: poll only
		{"https://coord.example/v1/derp/verify", "off", "", ""},
		{"https://coord.example/v1/derp/verify", "https://c2.example/v1/derp/watch", "https://c2.example/v1/derp/watch", ""},
		{"https://coord.example/v1/derp/verify", "coord.example", "", "--watch-url"},
	} {
		got, err := watchURL(tt.verify, tt.watch)
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("watchURL(%q, %q) = %q, %v; want %q, error naming %q", tt.verify, tt.watch, got, err, tt.want, tt.err)
		}
	}
	for _, args := range [][]string{
		{"--verify-url", "https://c/v1/derp/verify", "--coord-fingerprint", "nope"},
		{"--verify-url", "https://c/v1/derp/verify", "--coord-max-stale", "0s"},
		{"--verify-url", "https://c/v1/derp/verify", "--watch-url", "ftp://x"},
	} {
		var out, errb bytes.Buffer
		code := run(append(args, "--listen", "127.0.0.1:0", "--stun-port", "0", "--state-dir", t.TempDir()), &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), args[2]) {
			t.Errorf("%v: exit %d, stderr %q: want an error naming %s", args, code, errb.String(), args[2])
		}
	}
}
