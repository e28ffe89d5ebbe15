package engine

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// helperSpec is what the test binary, re-run as a helper inside a
// namespace, builds its engine from.
type helperSpec struct {
	Opts Options
	Cfg  Config
}

func TestMain(m *testing.M) {
	if spec := os.Getenv("LMDP_HELPER"); spec != "" {
		os.Exit(runHelper(spec))
	}
	os.Exit(m.Run())
}

// runHelper runs one engine until stdin closes, like the daemon would
// (with its 24 MiB Go memory limit).
func runHelper(spec string) int {
	var s helperSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, "helper spec:", err)
		return 2
	}
	limit := int64(24 << 20)
	if v, err := strconv.ParseInt(os.Getenv("LMDP_MEMLIMIT_MIB"), 10, 64); err == nil {
		limit = v << 20
	}
	debug.SetMemoryLimit(limit)
	if v, err := strconv.Atoi(os.Getenv("LMDP_GOGC")); err == nil {
		debug.SetGCPercent(v) // negative: off, only the limit triggers a GC
	}
	if v, err := strconv.Atoi(os.Getenv("LMDP_BATCH")); err == nil && v > 0 {
		batchSize = v
	}
	e, err := New(s.Opts, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer e.Close()
	if _, err := e.Reconfig(s.Cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// startHelper runs an engine process in ns and returns its pid.
func startHelper(t *testing.T, ns string, s helperSpec) int {
	t.Helper()
	b, _ := json.Marshal(s)
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LMDP_HELPER="+string(b))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper in %s: %q %v", ns, line, err)
	}
	return cmd.Process.Pid
}

// startStock runs stock wireguard-go as link dev in ns (dev names differ:
// the UAPI sockets share /var/run/wireguard).
func startStock(t *testing.T, ns, dev string, priv, peerPub, peerEP string, addr string) int {
	t.Helper()
	dir := t.TempDir()
	kf := filepath.Join(dir, "key")
	os.WriteFile(kf, []byte(priv), 0o600)
	cmd := exec.Command("ip", "netns", "exec", ns, "/tmp/wireguard-go", "-f", dev)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 50 && try("ip", "-n", ns, "link", "show", dev) != nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // UAPI socket
	run(t, "ip", "netns", "exec", ns, "wg", "set", dev, "private-key", kf, "listen-port", "51820",
		"peer", peerPub, "allowed-ips", "100.64.0.0/24", "endpoint", peerEP)
	run(t, "ip", "-n", ns, "addr", "add", addr+"/24", "dev", dev)
	run(t, "ip", "-n", ns, "link", "set", dev, "mtu", "1420", "up")
	return cmd.Process.Pid
}

func vmHWM(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return "?"
	}
	kb, _ := strconv.Atoi(string(m[1]))
	return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
}

func iperf(t *testing.T, nsClient, nsServer, dst string, secs int) float64 {
	t.Helper()
	run(t, "ip", "netns", "exec", nsServer, "iperf3", "-s", "-1", "-D")
	time.Sleep(300 * time.Millisecond)
	out := run(t, "ip", "netns", "exec", nsClient, "iperf3", "-c", dst, "-t", strconv.Itoa(secs), "-J")
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("iperf3 output: %v", err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}

// TestThroughput compares the engine with stock wireguard-go. It is a
// measurement, not a pass/fail test: LMDP_BENCH=1 go test -run TestThroughput -v
// (LMDP_INFLIGHT=N, LMDP_BATCH=N, LMDP_MEMLIMIT_MIB=N, LMDP_GOGC=N and
// LMDP_OFFLOADS=0 vary the engine; LMDP_SKIP_STOCK=1 skips the comparison).
func TestThroughput(t *testing.T) {
	if os.Getenv("LMDP_BENCH") == "" {
		testenv.Optional(t, "set LMDP_BENCH=1 to measure throughput")
	}
	requireRoot(t)
	secs := 10
	inflight, _ := strconv.Atoi(os.Getenv("LMDP_INFLIGHT"))
	off := Offloads{TUN: true, UDPGSO: true, UDPGRO: true}
	if os.Getenv("LMDP_OFFLOADS") == "0" {
		off = Offloads{}
	}
	if os.Getenv("LMDP_SKIP_ENGINE") == "" {
		nsA, nsB := newNS(t), newNS(t)
		link(t, nsA, "wan0", "198.18.0.1/24", nsB, "wan0", "198.18.0.2/24")
		opts := Options{ListenPort: 51820, Offloads: off, MaxInflightPackets: inflight}
		cfg := func(self, peer netip.Prefix, k, pk keyPair, ep netip.AddrPort) Config {
			return Config{PrivateKey: k.priv, Addresses: []netip.Prefix{self}, Routes: []netip.Prefix{meshNet},
				Peers: []Peer{{Key: pk.pub, AllowedIPs: []netip.Prefix{peer}, Endpoints: []netip.AddrPort{ep}}}}
		}
		ka, kb := newKeyPair(), newKeyPair()
		pa := startHelper(t, nsA, helperSpec{Opts: opts, Cfg: cfg(meshA, meshB, ka, kb, wanB)})
		pb := startHelper(t, nsB, helperSpec{Opts: opts, Cfg: cfg(meshB, meshA, kb, ka, wanA)})
		if err := ping(nsA, "100.64.0.2", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		g := iperf(t, nsA, nsB, "100.64.0.2", secs)
		t.Logf("engine (offloads=%v inflight=%d batch=%s limit=%s gogc=%s): %.2f Gbit/s, VmHWM sender %s receiver %s",
			off.TUN, inflight, envOr("LMDP_BATCH", strconv.Itoa(batchSize)), envOr("LMDP_MEMLIMIT_MIB", "24"),
			envOr("LMDP_GOGC", "100"), g, vmHWM(pa), vmHWM(pb))
	}
	if os.Getenv("LMDP_SKIP_STOCK") == "" {
		nsA, nsB := newNS(t), newNS(t)
		link(t, nsA, "wan0", "198.18.0.1/24", nsB, "wan0", "198.18.0.2/24")
		ka, kb := newKeyPair(), newKeyPair()
		pa := startStock(t, nsA, "wgbenchA", ka.priv.Base64(), kb.pub.String(), wanB.String(), "100.64.0.1")
		pb := startStock(t, nsB, "wgbenchB", kb.priv.Base64(), ka.pub.String(), wanA.String(), "100.64.0.2")
		if err := ping(nsA, "100.64.0.2", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		g := iperf(t, nsA, nsB, "100.64.0.2", secs)
		t.Logf("stock wireguard-go: %.2f Gbit/s, VmHWM sender %s receiver %s", g, vmHWM(pa), vmHWM(pb))
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type keyPair struct {
	priv key.NodePrivate
	pub  key.NodePublic
}

func newKeyPair() keyPair { k := key.NewNode(); return keyPair{k, k.Public()} }
