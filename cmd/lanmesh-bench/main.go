package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lanmesh/lanmesh/internal/bench"
)

func main() {
	// A re-executed child (see bench.ChildEnv) runs one role and exits.
	if child, err := bench.RunChild(context.Background()); child {
		if err != nil {
			fmt.Fprintf(os.Stderr, "lanmesh-bench child: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	bin := flag.String("bin", "bin", "directory with host builds and <os>_<arch>/ router builds (from `make build`)")
	out := flag.String("out", "bench/results", "directory for the result tables")
	only := flag.String("only", "size,throughput,firewall,dns,coordscale,connect,abuse,router,vm,revocation,plugins", "comma-separated benchmarks to run: size, throughput, firewall, dns, coordscale, connect, abuse, router (MIPS VM), vm (kernel vs userspace backend in VMs), revocation (root; 50 agents), plugins (IdP plugin start-up and crash restart), policycompat (needs -policy-dir)")
	n := flag.Int("n", 5, "throughput: interleaved repetitions per data plane")
	dur := flag.Duration("t", 10*time.Second, "throughput: duration of one iperf3 run")
	abuseHold = flag.Duration("abuse-t", 30*time.Second, "abuse: how long the agents hold their netmap streams under the flood")
	policyDir := flag.String("policy-dir", "", "policycompat: directory of policy files to check (NAME.expect.json sidecars hold recorded verdicts)")
	revNodes = flag.Int("revocation-nodes", 50, "revocation: agents in the testbed (two routers, the rest laptops)")
	revRuns = flag.Int("revocation-runs", 5, "revocation: users deleted one after the other (3 nodes each), one measurement each")
	modes := flag.String("modes", "", "throughput: comma-separated data planes (default all): plain, wireguard-go, lanmesh, relay")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: lanmesh-bench [flags]\n\nMeasures binary sizes against the router budget, LAN-to-LAN throughput\nagainst plain routing and stock wireguard-go, firewall updates, DNS\nqueries/s against dnsmasq, coord fan-out at scale, coord under a flood, the\npackaged agent in a MIPS router VM against stock wireguard-go (router) and\nthe kernel vs userspace backend in x86-64 and MIPS VMs (vm), and how fast\ndeleting a user reaches every peer's WireGuard device and the relay\n(revocation); writes markdown under -out.\nExits non-zero when the router binary is over budget or a benchmark failed.\n\nExample:\n  sudo lanmesh-bench -bin bin -out bench/results -n 3 -t 5s\n  sudo lanmesh-bench -bin bin -only router,vm -vm-n 3 -vm-t 10s\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	policyCompatDir = *policyDir
	if err := run(ctx, log, *bin, *out, *only, *modes, *n, *dur); err != nil {
		fmt.Fprintf(os.Stderr, "lanmesh-bench: %v\n", err)
		os.Exit(1)
	}
}

// policyCompatDir is -policy-dir.
var policyCompatDir string

// abuseHold is -abuse-t.
var abuseHold *time.Duration

// revNodes and revRuns are -revocation-nodes and -revocation-runs.
var revNodes, revRuns *int

func run(ctx context.Context, log *slog.Logger, bin, out, only, modes string, n int, dur time.Duration) error {
	want := map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		switch s = strings.TrimSpace(s); s {
		case "size", "throughput", "firewall", "dns", "coordscale", "connect", "abuse", "router", "vm", "revocation", "plugins":
			want[s] = true
		case "policycompat":
			// Not in the default set: it needs a corpus (-policy-dir).
			if policyCompatDir == "" {
				return fmt.Errorf("-only policycompat needs -policy-dir DIR (a directory of policy files)")
			}
			want[s] = true
		case "":
		default:
			return fmt.Errorf("-only: unknown benchmark %q (want size, throughput, firewall, dns, coordscale, connect, abuse, router, vm, revocation, plugins, policycompat)", s)
		}
	}
	absBin, err := filepath.Abs(bin)
	if err != nil {
		return fmt.Errorf("-bin %s: %w", bin, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("results dir: %w", err)
	}
	env := bench.CurrentEnv()
	var failed []string

	if want["size"] {
		var md bytes.Buffer
		err := bench.WriteSizeReport(&md, env, bench.MeasureSizes(absBin, bench.DefaultSizeTargets))
		pkgs, perr := bench.MeasurePackages(filepath.Join(absBin, "packages"))
		bench.WritePackageReport(&md, pkgs, perr)
		if werr := writeResult(out, "size.md", md.Bytes()); werr != nil {
			return werr
		}
		if err != nil {
			log.Error("bench: size", "err", err)
			failed = append(failed, err.Error())
		} else {
			log.Info("bench: size within budget", "file", filepath.Join(out, "size.md"))
		}
	}

	if want["throughput"] {
		var ms []string
		for _, m := range strings.Split(modes, ",") {
			switch strings.TrimSpace(m) {
			case "":
			case "plain":
				ms = append(ms, bench.ModePlain)
			case "wireguard-go":
				ms = append(ms, bench.ModeWireGo)
			case "lanmesh":
				ms = append(ms, bench.ModeLanmesh)
			case "relay":
				ms = append(ms, bench.ModeRelay)
			default:
				return fmt.Errorf("-modes: unknown data plane %q (want plain, wireguard-go, lanmesh, relay)", m)
			}
		}
		res, err := bench.RunThroughput(ctx, bench.ThroughputOptions{BinDir: absBin, Reps: n, Duration: dur, Modes: ms, Log: log})
		if err != nil {
			failed = append(failed, "throughput: "+err.Error())
		}
		if res != nil {
			var md bytes.Buffer
			if err := bench.WriteThroughputReport(&md, res); err != nil {
				return err
			}
			// The VM section (-only vm) of the file stays.
			if err := writeThroughput(out, md.Bytes(), nil); err != nil {
				return err
			}
			log.Info("bench: throughput written", "file", filepath.Join(out, "throughput.md"))
			for _, f := range res.Failed() {
				failed = append(failed, "throughput: "+f)
			}
		}
	}
	cn, err := runConnect(ctx, log, out, want, absBin, n)
	failed = append(failed, cn...)
	if err != nil {
		return err
	}
	cf, err := runControl(ctx, log, out, want, n)
	failed = append(failed, cf...)
	if err != nil {
		return err
	}
	if want["abuse"] {
		res := bench.RunAbuse(ctx, bench.AbuseOptions{Coord: filepath.Join(absBin, "lanmesh-coord"), Hold: *abuseHold, Log: log})
		if err := writeReport(out, "abuse.md", func(b *bytes.Buffer) error { return bench.WriteAbuseReport(b, res) }); err != nil {
			return err
		}
		log.Info("bench: abuse written", "file", filepath.Join(out, "abuse.md"))
		for _, f := range res.Failed() {
			failed = append(failed, "abuse: "+f)
		}
	}
	if want["plugins"] {
		res := bench.RunPlugins(ctx, bench.PluginsOptions{BinDir: absBin})
		if err := writeReport(out, "plugins.md", func(b *bytes.Buffer) error { return bench.WritePluginsReport(b, res) }); err != nil {
			return err
		}
		log.Info("bench: plugins written", "file", filepath.Join(out, "plugins.md"))
		if res.Err != nil {
			failed = append(failed, "plugins: "+res.Err.Error())
		}
	}
	if want["revocation"] {
		res := bench.RunRevocation(ctx, bench.RevocationOptions{BinDir: absBin, Nodes: *revNodes, Runs: *revRuns, Log: log})
		if err := writeReport(out, "revocation.md", func(b *bytes.Buffer) error { return bench.WriteRevocationReport(b, res) }); err != nil {
			return err
		}
		log.Info("bench: revocation written", "file", filepath.Join(out, "revocation.md"))
		for _, f := range res.Failed() {
			failed = append(failed, "revocation: "+f)
		}
	}
	if want["policycompat"] {
		f, err := runPolicyCompat(log, out, policyCompatDir)
		if err != nil {
			return err
		}
		failed = append(failed, f...)
	}
	vf, err := runVMBenches(ctx, log, out, want, absBin)
	failed = append(failed, vf...)
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("FAILED:\n  %s", strings.Join(failed, "\n  "))
	}
	return nil
}

// writeResult replaces a result file atomically, so an interrupted run
// never leaves half a table.
func writeResult(dir, name string, b []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}
