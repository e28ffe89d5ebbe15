package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
)

func TestRunErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"status", "--socket", sock}, 1, "cannot reach the lanmesh agent at " + sock + ": is `lanmesh agent` running?"},
		{[]string{"--socket", sock, "down"}, 1, "cannot reach the lanmesh agent"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{}, 2, "Usage"},
		{[]string{"ping"}, 2, "Example:"},
		{[]string{"up", "--advertise-routes", "10.0.0.1/8", "--socket", sock}, 1, "did you mean 10.0.0.0/8"},
		{[]string{"up", "--nope"}, 2, "flag provided but not defined"},
		{[]string{"status", "--help"}, 0, "Example:\n  lanmesh status --json"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(tt.args, &out, &errb)
		if code != tt.code || !strings.Contains(errb.String(), tt.stderr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tt.args, code, errb.String(), tt.code, tt.stderr)
		}
	}
}

func TestVersionJSON(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"version", "--json"}, &out, &out); code != 0 {
		t.Fatal(out.String())
	}
	var v map[string]string
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v["version"] != "dev" || !strings.HasPrefix(v["go"], "go") {
		t.Fatalf("version --json = %s", out.String())
	}
}

func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	st := localapi.Status{
		BackendState: "Running",
		Coord:        localapi.CoordStatus{URL: "https://198.18.0.2", LastError: "dial tcp 198.18.0.2:443: connect: connection refused", NextRetry: now.Add(4 * time.Second).Format(time.RFC3339)},
		Self:         &localapi.Node{Name: "router-a", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")}, AdvertisedRoutes: []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24")}},
		Peers: []localapi.Peer{{Name: "router-b", Addresses: []netip.Prefix{netip.MustParsePrefix("fd12::2/128"), netip.MustParsePrefix("100.64.0.2/32")},
			Path: "direct", Endpoint: "198.18.2.2:41641", LastHandshake: now.Add(-12 * time.Second).Format(time.RFC3339), Online: true},
			{Name: "router-c", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.3/32")}, Path: "relay coord", RelayInCoord: true, Online: true}},
	}
	var b bytes.Buffer
	printStatus(&b, st, now)
	for _, want := range []string{"coord: disconnected to https://198.18.0.2", "connection refused (retry in 4s)",
		"router-a (self)", "198.19.1.0/24", "router-b", "100.64.0.2", "direct 198.18.2.2:41641", "12s ago",
		"relay coord", "warning: router-c is reached through coord's embedded relay"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "warning: router-b") {
		t.Errorf("direct peer router-b warned about:\n%s", b.String())
	}
}

// The CLI against a real local API server with a scripted backend: up
// passes only the flags the user set, ping prints the contract's line.
type scripted struct{ up localapi.UpRequest }

func (s *scripted) Status(context.Context) localapi.Status {
	return localapi.Status{BackendState: "Running"}
}
func (s *scripted) Up(_ context.Context, r localapi.UpRequest) (localapi.UpResponse, error) {
	s.up = r
	return localapi.UpResponse{Name: "router-a", Addresses: []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32")}}, nil
}
func (s *scripted) Down(context.Context) error { return nil }
func (s *scripted) Ping(_ context.Context, r localapi.PingRequest) (localapi.PingResponse, error) {
	if r.Target == "router-c" {
		return localapi.PingResponse{}, &localapi.Error{Code: 504, Msg: "no reply from router-c (100.64.0.3): timed out after 1s"}
	}
	return localapi.PingResponse{Name: "router-b", IP: "100.64.0.2", Endpoint: "198.18.2.2:41641", Path: "direct", Seq: r.Seq, RTTMs: 1.234}, nil
}

func TestCLIAgainstServer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "l.sock")
	b := &scripted{}
	srv, err := localapi.Listen(sock, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })

	var out, errb bytes.Buffer
	code := run([]string{"--socket", sock, "up", "--login-server", "https://198.18.0.2", "--auth-key", "lmk1.abcd.0123456789abcdef", "--accept-routes", "--advertise-routes", "198.19.1.0/24,198.19.5.0/24"}, &out, &errb)
	if code != 0 || out.String() != "router-a is up: 100.64.0.1\n" {
		t.Fatalf("up = %d %q %q", code, out.String(), errb.String())
	}
	if b.up.AcceptRoutes == nil || !*b.up.AcceptRoutes || b.up.SNATSubnetRoutes != nil || b.up.Hostname != nil ||
		b.up.AdvertiseRoutes == nil || len(*b.up.AdvertiseRoutes) != 2 || b.up.Timeout != 30*time.Second {
		t.Fatalf("up request = %+v", b.up)
	}

	out.Reset()
	code = run([]string{"ping", "router-b", "--socket", sock}, &out, &errb)
	if code != 0 || out.String() != "pong from router-b (100.64.0.2) via 198.18.2.2:41641 in 1.2ms\n" {
		t.Fatalf("ping = %d %q", code, out.String())
	}
	out.Reset()
	errb.Reset()
	code = run([]string{"ping", "--socket", sock, "--timeout", "1s", "--json", "router-c"}, &out, &errb)
	if code != 1 || !strings.Contains(out.String(), `"received": 0`) {
		t.Fatalf("ping with no reply = %d %q %q", code, out.String(), errb.String())
	}
}
