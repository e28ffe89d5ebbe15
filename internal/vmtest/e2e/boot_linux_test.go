package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
	"github.com/lanmesh/lanmesh/internal/vmtest"
)

// agentModules are what `lanmesh agent` needs from a modular kernel: the
// kernel WireGuard device, TUN for the userspace backend, and nftables
// with the expressions and chain types its firewall uses.
var agentModules = []string{"wireguard", "tun", "nf_tables", "nft_ct", "nft_masq", "nft_chain_nat"}

// TestBootAndAgent boots each guest once with a NIC on a tap in a testbed
// namespace, and checks: the modules loaded, a kernel wireguard link can
// be made, the guest and the namespace ping each other, the guest's
// lanmesh is the right architecture and `lanmesh agent` starts and serves
// its local API.
func TestBootAndAgent(t *testing.T) {
	for _, arch := range []vmtest.Arch{vmtest.AMD64, vmtest.MIPSLE} {
		t.Run(string(arch), func(t *testing.T) {
			vmtest.Require(t, arch)
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
			defer cancel()
			w := testbed.New(t)
			h, err := w.AddHost("vmhost")
			if err != nil {
				t.Fatal(err)
			}
			if err := h.AddTap("tap0", "198.18.99.1/24"); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			k, err := vmtest.FetchKernel(ctx, arch)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: kernel %s ready in %v (cache %s)", arch, k.Package, time.Since(t0).Round(time.Millisecond), vmtest.CacheDir())
			t0 = time.Now()
			bin, err := vmtest.RouterBinary(ctx, arch)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: lanmesh binary %s ready in %v", arch, bin, time.Since(t0).Round(time.Millisecond))
			vm, err := vmtest.Boot(ctx, vmtest.Options{Name: "vm", Arch: arch, Host: h, Tap: "tap0", Modules: agentModules, Lanmesh: bin})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { vm.Close() })
			t.Logf("%s (%s): boot to command channel %v", arch, vm.Kernel.Package, vm.BootTime.Round(time.Millisecond))

			run := func(script string) string {
				t.Helper()
				out, err := vm.Run(ctx, script)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			mods := run("cat /proc/modules | cut -d' ' -f1")
			for _, m := range []string{"wireguard", "tun", "nf_tables", "virtio_net"} {
				if !strings.Contains("\n"+mods, "\n"+m+"\n") {
					t.Errorf("module %s not loaded; /proc/modules:\n%s", m, mods)
				}
			}
			run("ip link add wg0 type wireguard && ip link set wg0 up")
			if out := run("cat /sys/class/net/wg0/uevent"); !strings.Contains(out, "DEVTYPE=wireguard") {
				t.Errorf("wg0 is not a wireguard link:\n%s", out)
			}
			run("ip link del wg0")
			run("ip addr add 198.18.99.2/24 dev eth0 && ip link set eth0 up")
			if _, err := vm.Run(ctx, "ping -c 1 -W 5 198.18.99.1 || ping -c 3 -W 5 198.18.99.1"); err != nil {
				t.Fatalf("guest -> namespace: %v", err)
			}
			if n, err := h.Ping(ctx, "198.18.99.2", 3, 5*time.Second); err != nil || n == 0 {
				t.Fatalf("namespace -> guest: received %d: %v", n, err)
			}
			out := run("lanmesh version")
			t.Logf("guest lanmesh version: %s", strings.TrimSpace(out))
			if arch == vmtest.MIPSLE && !strings.Contains(run("uname -m"), "mips") {
				t.Errorf("not a MIPS guest")
			}
			run("mkdir -p /var/lib/lanmesh && setsid lanmesh agent --state-dir /var/lib/lanmesh --socket /run/lanmesh.sock </dev/null >/tmp/agent.log 2>&1 &")
			var st string
			deadline := time.Now().Add(2 * time.Minute)
			for {
				o, rc, err := vm.Exec(ctx, "lanmesh --socket /run/lanmesh.sock status --json")
				if err != nil {
					t.Fatal(err)
				}
				if rc == 0 {
					st = o
					break
				}
				if time.Now().After(deadline) {
					log, _ := vm.Run(ctx, "cat /tmp/agent.log")
					t.Fatalf("agent's local API never answered: %s\nagent log:\n%s", o, log)
				}
				time.Sleep(time.Second)
			}
			if !strings.Contains(st, "NeedsLogin") && !strings.Contains(st, "needs") {
				t.Logf("status: %s", st)
			}
			rss := run("grep VmRSS /proc/$(pidof lanmesh)/status")
			t.Logf("%s idle agent: %s", arch, strings.TrimSpace(rss))
		})
	}
}
