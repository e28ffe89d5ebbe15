package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/derp/stun"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

func freeUDPPort(t *testing.T) int {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// startServe runs `serve` on a free 127.0.0.1 port with extra flags and
// waits for its admin socket.
func startServe(t *testing.T, extra ...string) (dir, addr string) {
	t.Helper()
	dir, addr = t.TempDir(), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	args := append([]string{"--state-dir", dir, "serve", "--listen", addr, "--server-url", "https://" + addr}, extra...)
	go func() { done <- run(ctx, args, os.Stdout, os.Stderr) }()
	t.Cleanup(func() { cancel(); <-done })
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, "admin.sock")); err == nil {
			return dir, addr
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d", code)
		case <-time.After(50 * time.Millisecond):
		}
		if i > 100 {
			t.Fatal("admin socket never appeared")
		}
	}
}

// joinAndMap registers a node with a fresh key and returns its private
// node key and the first (full) netmap.
func joinAndMap(t *testing.T, dir, addr, host string) (key.NodePrivate, *wire.MapMessage) {
	t.Helper()
	out, code := cli(t, dir, "keys", "create")
	if code != 0 {
		t.Fatalf("keys create: %s", out)
	}
	ak, err := wire.ParseAuthKey(out)
	if err != nil {
		t.Fatal(err)
	}
	c, err := controlclient.New(controlclient.Options{ServerURL: "https://" + addr, Fingerprint: ak.Fingerprint, MachineKey: key.NewMachine()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	priv := key.NewNode()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := c.Register(ctx, wire.RegisterRequest{AuthKey: ak.WithoutFingerprint(), NodeKey: priv.Public(), Hostname: host}); err != nil {
		t.Fatal(err)
	}
	got := make(chan *wire.MapMessage, 10)
	go c.Map(ctx, wire.MapRequest{NodeKey: priv.Public()}, func(m *wire.MapMessage) error {
		select {
		case got <- m:
		default:
		}
		return nil
	})
	select {
	case m := <-got:
		if !m.Full {
			t.Fatalf("first message is not the full map: %+v", m)
		}
		return priv, m
	case <-time.After(5 * time.Second):
		t.Fatal("no netmap")
	}
	return priv, nil
}

const extraMap = `{"regions":[{"id":2,"code":"lab","name":"Lab relay","nodes":[{"name":"lab1","ipv4":"198.18.0.20","derp_port":443,"stun_port":3478}]}]}`

// S9, S15 through the real serve command: coord's relay and STUN are on
// by default, the full map names them (and --derp-map's regions), the
// relay refuses strangers, and `nodes delete` ends a node's relay
// connection within a second.
func TestServeRelay(t *testing.T) {
	mapFile := filepath.Join(t.TempDir(), "derp.json")
	if err := os.WriteFile(mapFile, []byte(extraMap), 0o600); err != nil {
		t.Fatal(err)
	}
	stunPort := freeUDPPort(t)
	dir, addr := startServe(t, "--stun-port", strconv.Itoa(stunPort), "--derp-map", mapFile)
	priv, full := joinAndMap(t, dir, addr, "gw")

	dm := full.DERPMap
	if dm == nil || len(dm.Regions) != 2 || dm.Regions[0].ID != 1 || dm.Regions[0].Code != "coord" || dm.Regions[1].Code != "lab" {
		t.Fatalf("full map's DERP map: %+v", dm)
	}
	cn := dm.Regions[0].Nodes[0]
	_, port, _ := net.SplitHostPort(addr)
	if cn.IPv4.String() != "127.0.0.1" || strconv.Itoa(cn.DERPPort) != port || cn.STUNPort != stunPort {
		t.Fatalf("coord relay node %+v; want 127.0.0.1, derp port %s, stun port %d", cn, port, stunPort)
	}

	// STUN answers at the address the map gives.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if mapped, _, err := stun.Request(ctx, pc, cn.STUNAddrs()[0]); err != nil || mapped != pc.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("STUN: %v %v", mapped, err)
	}

	// The relay, reached from the map, admits the node and no stranger.
	c, err := derp.Connect(ctx, cn.URL(), priv, cn.CertFingerprint)
	if err != nil {
		t.Fatalf("relay from the map refused a registered node: %v", err)
	}
	defer c.Close()
	if s, err := derp.Connect(ctx, cn.URL(), key.NewNode(), cn.CertFingerprint); err == nil {
		s.Close()
		t.Fatal("relay admitted an unknown key")
	}

	gone := make(chan error, 1)
	go func() {
		for {
			if _, err := c.RecvMessage(); err != nil {
				gone <- err
				return
			}
		}
	}()
	start := time.Now()
	if out, code := cli(t, dir, "nodes", "delete", "gw"); code != 0 {
		t.Fatalf("nodes delete: %s", out)
	}
	select {
	case err := <-gone:
		t.Logf("relay dropped the deleted node after %v: %v", time.Since(start), err)
	case <-time.After(time.Second):
		t.Fatal("deleted node still on coord's relay after 1s")
	}
}

// --derp=false: no relay at /derp, no STUN, and the map holds only the
// file's regions.
func TestServeRelayOff(t *testing.T) {
	mapFile := filepath.Join(t.TempDir(), "derp.json")
	os.WriteFile(mapFile, []byte(extraMap), 0o600)
	stunPort := freeUDPPort(t)
	dir, addr := startServe(t, "--derp=false", "--stun-port", strconv.Itoa(stunPort), "--derp-map", mapFile)
	priv, full := joinAndMap(t, dir, addr, "gw")
	if full.DERPMap == nil || len(full.DERPMap.Regions) != 1 || full.DERPMap.Regions[0].ID != 2 {
		t.Fatalf("DERP map with --derp=false: %+v", full.DERPMap)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	fp, _ := cli(t, dir, "fingerprint")
	if c, err := derp.Connect(ctx, "https://"+addr+derp.Path, priv, strings.TrimSpace(fp)); err == nil {
		c.Close()
		t.Fatal("relay served with --derp=false")
	} else if !strings.Contains(err.Error(), "404") {
		t.Fatalf("relay with --derp=false: want 404, got %v", err)
	}
	// Nothing listens on the STUN port: binding it again works.
	pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(stunPort)))
	if err != nil {
		t.Fatalf("STUN port taken with --derp=false: %v", err)
	}
	pc.Close()
}

func TestServeRelayFlagErrors(t *testing.T) {
	dir := t.TempDir()
	clash := filepath.Join(dir, "clash.json")
	os.WriteFile(clash, []byte(strings.Replace(extraMap, `"id":2`, `"id":1`, 1)), 0o600)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"regions":[{"id":2,"code":"x","nodes":[{"name":"n"}]}]}`), 0o600)
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"stun port range", []string{"--stun-port", "70000"}, 2, "--stun-port 70000"},
		{"missing map", []string{"--derp-map", filepath.Join(dir, "nope.json")}, 1, "--derp-map"},
		{"invalid map", []string{"--derp-map", bad}, 1, "needs host_name"},
		{"region 1 taken", []string{"--derp-map", clash, "--stun-port", "0"}, 1, "coord's embedded relay"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := freeAddr(t)
			var out, errb bytes.Buffer
			args := append([]string{"--state-dir", t.TempDir(), "serve", "--listen", addr, "--server-url", "https://" + addr}, tt.args...)
			code := run(context.Background(), args, &out, &errb)
			if code != tt.code || !strings.Contains(errb.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d naming %q", code, errb.String(), tt.code, tt.want)
			}
		})
	}
}
