package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
)

// ThroughputOptions configure RunThroughput.
type ThroughputOptions struct {
	BinDir   string        // host builds of lanmesh and lanmesh-coord
	Reps     int           // interleaved repetitions per data plane
	Duration time.Duration // per iperf3 run
	Modes    []string      // subset of ModePlain, ModeWireGo, ModeLanmesh; all when empty
	Log      *slog.Logger
}

// dataPlane is one way of carrying LAN A <-> LAN B traffic between the
// two routers of the standard topology. All are set up at once; activate
// points both routers' routes for the far LAN at this one, so the runs can
// interleave without tearing anything down.
type dataPlane struct {
	mode   string
	note   string
	routeA []string // `ip route replace 198.19.2.0/24 <routeA>` on router A
	routeB []string // the same for 198.19.1.0/24 on router B
	devA   string   // the device `ip route get` must answer on router A
	devB   string
	procs  []*testbed.Proc // whose VmHWM counts
	rssOf  string
	// path, when set, says which path the data plane used (direct or
	// relay), so a slow number can be read correctly.
	path func(ctx context.Context) (string, error)
}

// RunThroughput builds the standard topology (routers directly on the
// internet), sets up every data plane and measures each Reps times,
// interleaved so drift of the machine hits all of them alike.
func RunThroughput(ctx context.Context, opt ThroughputOptions) (*ThroughputResult, error) {
	if opt.Reps <= 0 || opt.Duration <= 0 {
		return nil, fmt.Errorf("throughput: reps %d and duration %v must be positive", opt.Reps, opt.Duration)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("throughput: needs root (network namespaces)")
	}
	log := opt.Log
	if log == nil {
		log = slog.Default()
	}
	modes := opt.Modes
	if len(modes) == 0 {
		modes = []string{ModePlain, ModeWireGo, ModeLanmesh, ModeRelay}
	}
	for _, m := range modes {
		if !slices.Contains([]string{ModePlain, ModeWireGo, ModeLanmesh, ModeRelay}, m) {
			return nil, fmt.Errorf("throughput: unknown data plane %q", m)
		}
	}

	w, err := testbed.Open(testbed.Options{})
	if err != nil {
		return nil, fmt.Errorf("throughput: %w", err)
	}
	defer w.Close()
	s, err := testbed.BuildStandard(w, testbed.StandardOptions{})
	if err != nil {
		w.KeepLogs()
		return nil, fmt.Errorf("throughput: standard topology: %w", err)
	}
	log.Info("bench: topology up", "world", w.Prefix, "logs", w.LogDir)

	res := &ThroughputResult{
		Env: CurrentEnv(), Reps: opt.Reps, Duration: opt.Duration,
		Setup: "Topology: testbed standard (routers directly on the simulated internet, no NAT): " +
			"a1 " + testbed.A1IP + " - router A " + testbed.WANA + " - internet bridge - router B " + testbed.WANB + " - b1 " + testbed.B1IP + ".",
	}
	var planes []*dataPlane
	for _, m := range modes {
		if m == ModeRelay {
			continue // its own world, after these runs
		}
		mr := ModeResult{Mode: m}
		var dp *dataPlane
		switch m {
		case ModePlain:
			dp = plainPlane()
		case ModeWireGo:
			dp, err = startWireGo(ctx, s, log)
		case ModeLanmesh:
			dp, err = startLanmesh(ctx, s, opt.BinDir, log)
		}
		if err != nil {
			log.Error("bench: data plane setup failed", "mode", m, "err", err)
			mr.Errs = append(mr.Errs, "setup: "+err.Error())
			w.KeepLogs()
		} else {
			mr.Note, mr.RSSName = dp.note, dp.rssOf
			planes = append(planes, dp)
		}
		res.Modes = append(res.Modes, mr)
	}

	srv, err := s.B1.Start("iperf3-server", "iperf3", "-s", "-p", strconv.Itoa(defaultIperfP))
	if err != nil {
		return nil, fmt.Errorf("throughput: iperf3 server: %w", err)
	}
	defer srv.Stop(2 * time.Second)
	time.Sleep(300 * time.Millisecond) // let it bind before the first client

	for rep := 1; rep <= opt.Reps; rep++ {
		for _, dp := range planes {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			mr := res.mode(dp.mode)
			bps, rss, err := measureOnce(ctx, s, dp, opt.Duration)
			if err != nil {
				log.Error("bench: run failed", "mode", dp.mode, "rep", rep, "err", err)
				mr.Errs = append(mr.Errs, fmt.Sprintf("run %d: %v", rep, err))
				w.KeepLogs()
				continue
			}
			log.Info("bench: run", "mode", dp.mode, "rep", rep, "gbit_s", gbps(bps), "peak_rss", MiB(rss))
			mr.BitsPS = append(mr.BitsPS, bps)
			mr.PeakRSS = max(mr.PeakRSS, rss)
			if dp.path != nil {
				p, err := dp.path(ctx)
				if err != nil {
					p = "unknown (" + err.Error() + ")"
				}
				if !slices.Contains(mr.Paths, p) {
					mr.Paths = append(mr.Paths, p)
				}
			}
		}
	}
	if slices.Contains(modes, ModeRelay) {
		res.Relay = runRelay(ctx, opt, log)
	}
	if len(res.Failed()) > 0 {
		log.Warn("bench: logs kept", "dir", w.LogDir)
	}
	return res, nil
}

// measureOnce routes the LANs through dp, checks a1 reaches b1, and runs
// one iperf3 transfer. It returns bit/s and the peak RSS of dp's processes.
func measureOnce(ctx context.Context, s *testbed.Standard, dp *dataPlane, d time.Duration) (float64, int64, error) {
	if err := dp.activate(ctx, s); err != nil {
		return 0, 0, err
	}
	if n, err := s.A1.Ping(ctx, testbed.B1IP, 3, 5*time.Second); err != nil || n == 0 {
		return 0, 0, fmt.Errorf("a1 cannot ping b1 through %s (%d replies): %v", dp.mode, n, err)
	}
	for _, p := range dp.procs {
		if !p.Running() {
			return 0, 0, fmt.Errorf("%s exited: %v (log %s)", p.Name, p.Err(), p.LogPath)
		}
		// 5 resets VmHWM to the current RSS, so the peak is this transfer's.
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.Pid()), []byte("5"), 0); err != nil {
			return 0, 0, fmt.Errorf("reset peak RSS of %s: %w", p.Name, err)
		}
	}
	secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	rctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := s.A1.Run(rctx, "iperf3", "-c", testbed.B1IP, "-p", strconv.Itoa(defaultIperfP), "-t", secs, "-J")
	if err != nil && out.Stdout == "" {
		return 0, 0, fmt.Errorf("iperf3: %w", err)
	}
	bps, perr := ParseIperf3([]byte(out.Stdout))
	if perr != nil {
		return 0, 0, perr
	}
	var peak int64
	for _, p := range dp.procs {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
		if err != nil {
			return 0, 0, fmt.Errorf("%s: read status: %w", p.Name, err)
		}
		hwm, err := ParseVmHWM(st)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", p.Name, err)
		}
		peak = max(peak, hwm)
	}
	// The route must still be ours: an agent that rewrote it mid-run would
	// have measured some other path.
	if err := dp.check(ctx, s); err != nil {
		return 0, 0, fmt.Errorf("after the transfer: %w", err)
	}
	return bps, peak, nil
}

func (dp *dataPlane) activate(ctx context.Context, s *testbed.Standard) error {
	if _, err := s.RouterA.Run(ctx, append([]string{"ip", "route", "replace", testbed.LANB}, dp.routeA...)...); err != nil {
		return err
	}
	if _, err := s.RouterB.Run(ctx, append([]string{"ip", "route", "replace", testbed.LANA}, dp.routeB...)...); err != nil {
		return err
	}
	return dp.check(ctx, s)
}

// check asks each router's kernel which device carries the far LAN.
func (dp *dataPlane) check(ctx context.Context, s *testbed.Standard) error {
	for _, c := range []struct {
		h        *testbed.Host
		dst, dev string
	}{{s.RouterA, testbed.B1IP, dp.devA}, {s.RouterB, testbed.A1IP, dp.devB}} {
		r, err := c.h.Run(ctx, "ip", "-o", "route", "get", c.dst)
		if err != nil {
			return err
		}
		if !slices.Contains(strings.Fields(r.Stdout), c.dev) {
			return fmt.Errorf("%s routes %s as %q, want dev %s for %s", c.h.Name, c.dst, strings.TrimSpace(r.Stdout), c.dev, dp.mode)
		}
	}
	return nil
}

// plainPlane routes each LAN straight to the other router's WAN address
// over the internet segment: the ceiling any tunnel is compared with.
func plainPlane() *dataPlane {
	return &dataPlane{
		mode:   ModePlain,
		note:   "kernel forwarding, LAN routes via the other router's WAN",
		routeA: []string{"via", testbed.WANB, "dev", "wan0"},
		routeB: []string{"via", testbed.WANA, "dev", "wan0"},
		devA:   "wan0",
		devB:   "wan0",
	}
}
