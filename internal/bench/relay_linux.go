package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
)

// runRelay measures lanmesh forced onto coord's embedded relay: router A
// sits behind the testbed's noudp NAT (all UDP dropped, TCP 443 out
// only), router B behind an easy NAT. Each run also reads coord's CPU
// time from /proc/PID/stat, so the relay's cost per Gbit shows.
func runRelay(ctx context.Context, opt ThroughputOptions, log *slog.Logger) *RelayResult {
	rr := &RelayResult{Note: "Own world: router A behind the testbed's noudp NAT (UDP dropped, only TCP 443 out), router B behind an easy NAT; " +
		"all traffic goes through coord's embedded relay over TLS, its per-client rate limit lifted (--derp-rate-limit 0) to measure capacity. Relay CPU = utime+stime of the lanmesh-coord process (/proc/PID/stat) during the transfer, divided by the Gbit moved."}
	fail := func(err error) *RelayResult {
		log.Error("bench: relayed throughput", "err", err)
		rr.Errs = append(rr.Errs, err.Error())
		return rr
	}
	if opt.BinDir != "" {
		os.Setenv("LANMESH_BIN_DIR", opt.BinDir)
	}
	w, err := testbed.Open(testbed.Options{})
	if err != nil {
		return fail(err)
	}
	defer w.Close()
	s, err := testbed.BuildStandard(w, testbed.StandardOptions{NATA: testbed.NATNoUDP, NATB: testbed.NATEasy})
	if err != nil {
		return fail(fmt.Errorf("noudp topology: %w", err))
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	// Capacity, not the per-client limit: lift --derp-rate-limit
	// (default derp.DefaultRateBytesPerSec, docs/limits.md).
	m, err := testbed.StartMeshWith(sctx, s, nil, testbed.MeshOptions{CoordArgs: []string{"--derp-rate-limit", "0"}})
	cancel()
	if err != nil {
		w.KeepLogs()
		return fail(fmt.Errorf("mesh: %w (logs in %s)", err, w.LogDir))
	}
	srv, err := s.B1.Start("iperf3-server", "iperf3", "-s", "-p", strconv.Itoa(defaultIperfP))
	if err != nil {
		return fail(err)
	}
	defer srv.Stop(2 * time.Second)
	if _, err := waitPing(ctx, s.A1, testbed.B1IP, 15*time.Second); err != nil {
		w.KeepLogs()
		return fail(fmt.Errorf("%w (logs in %s)", err, w.LogDir))
	}
	secs := strconv.FormatFloat(opt.Duration.Seconds(), 'f', -1, 64)
	for rep := 1; rep <= opt.Reps; rep++ {
		if ctx.Err() != nil {
			break
		}
		cpu0, err := procCPU(m.Coord.Proc.Pid())
		if err != nil {
			return fail(err)
		}
		rctx, cancel := context.WithTimeout(ctx, opt.Duration+30*time.Second)
		out, err := s.A1.Run(rctx, "iperf3", "-c", testbed.B1IP, "-p", strconv.Itoa(defaultIperfP), "-t", secs, "-J")
		cancel()
		cpu1, cerr := procCPU(m.Coord.Proc.Pid())
		if err != nil && out.Stdout == "" {
			rr.Errs = append(rr.Errs, fmt.Sprintf("run %d: iperf3: %v", rep, err))
			continue
		}
		bps, perr := ParseIperf3([]byte(out.Stdout))
		if perr != nil || cerr != nil || bps <= 0 {
			rr.Errs = append(rr.Errs, fmt.Sprintf("run %d: %v %v (%.0f bit/s)", rep, perr, cerr, bps))
			continue
		}
		cpuSecs := float64(cpu1-cpu0) / clockTicks
		gbitMoved := bps * opt.Duration.Seconds() / gbit
		rr.BitsPS = append(rr.BitsPS, bps)
		rr.CPUPerG = append(rr.CPUPerG, cpuSecs/gbitMoved)
		log.Info("bench: run", "mode", ModeRelay, "rep", rep, "gbit_s", gbps(bps), "relay_cpu_s", cpuSecs, "cpu_s_per_gbit", fmt.Sprintf("%.2f", cpuSecs/gbitMoved))
	}
	if st, err := m.A.Status(ctx); err == nil {
		if p := st.Peer("router-b"); p != nil && !slices.Contains(rr.Paths, p.Path) {
			rr.Paths = append(rr.Paths, p.Path)
		}
	}
	for _, p := range rr.Paths {
		if !strings.HasPrefix(p, "relay") {
			rr.Errs = append(rr.Errs, fmt.Sprintf("path %q is not the relay: the numbers are not relayed throughput", p))
		}
	}
	if len(rr.Errs) > 0 {
		w.KeepLogs()
	}
	return rr
}

func procCPU(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("relay CPU: %w", err)
	}
	return ParseProcStatCPU(b)
}

// waitPing pings until a reply comes or limit passes.
func waitPing(ctx context.Context, h *testbed.Host, dst string, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	for time.Since(start) < limit {
		if n, _ := h.Ping(ctx, dst, 1, 500*time.Millisecond); n == 1 {
			return time.Since(start), nil
		}
	}
	return 0, fmt.Errorf("%s -> %s: no ping reply within %v", h.Name, dst, limit)
}
