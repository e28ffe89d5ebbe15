package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
)

// ConnectOptions configure RunConnect.
type ConnectOptions struct {
	BinDir string // host builds of lanmesh and lanmesh-coord
	Reps   int    // fresh worlds per NAT pairing
	Log    *slog.Logger
}

// RunConnect measures time to first packet and time to direct for every
// NAT pairing, Reps fresh worlds each, one world at a time so the runs do
// not compete for the CPU.
func RunConnect(ctx context.Context, opt ConnectOptions) (*ConnectResult, error) {
	if opt.Reps <= 0 {
		return nil, fmt.Errorf("connect: reps %d must be positive", opt.Reps)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("connect: needs root (network namespaces)")
	}
	if opt.BinDir != "" {
		os.Setenv("LANMESH_BIN_DIR", opt.BinDir)
	}
	log := opt.Log
	if log == nil {
		log = slog.Default()
	}
	res := &ConnectResult{Env: CurrentEnv(), Reps: opt.Reps, Load: loadAvg()}
	for _, cc := range testbed.NATPairs {
		cell := ConnectCell{Name: cc.Name, WantDirect: cc.Direct, Why: cc.Why}
		for rep := 1; rep <= opt.Reps; rep++ {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			c, err := connectOnce(ctx, cc)
			if err != nil {
				err = fmt.Errorf("run %d: %w", rep, err)
			}
			if err != nil {
				log.Error("bench: connect", "pair", cc.Name, "rep", rep, "err", err)
				cell.Errs = append(cell.Errs, err.Error())
			}
			if c.FirstPacket > 0 {
				cell.First = append(cell.First, seconds(c.FirstPacket))
			}
			if c.Direct > 0 {
				cell.Direct = append(cell.Direct, seconds(c.Direct))
			}
			if p := pathKind(c.Path); p != "" && !slices.Contains(cell.Paths, p) {
				cell.Paths = append(cell.Paths, p)
			}
			log.Info("bench: connect", "pair", cc.Name, "rep", rep, "first_ms", c.FirstPacket.Milliseconds(), "direct_ms", c.Direct.Milliseconds(), "path", c.Path)
		}
		res.Cells = append(res.Cells, cell)
	}
	return res, nil
}

// pathKind drops the port (it varies from run to run behind a hard NAT).
func pathKind(p string) string {
	if strings.HasPrefix(p, "direct") {
		return "direct"
	}
	return p
}

func connectOnce(ctx context.Context, pair testbed.NATPair) (testbed.Connect, error) {
	w, err := testbed.Open(testbed.Options{})
	if err != nil {
		return testbed.Connect{}, err
	}
	defer w.Close()
	s, err := testbed.BuildStandard(w, pair.Opts)
	if err != nil {
		return testbed.Connect{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	m, err := testbed.StartMesh(sctx, s, nil)
	if err != nil {
		w.KeepLogs()
		return testbed.Connect{}, fmt.Errorf("mesh: %w (logs in %s)", err, w.LogDir)
	}
	hold := 5 * time.Second
	if pair.Direct {
		hold = pair.DirectWithin()
	}
	c, err := testbed.MeasureConnect(ctx, m, time.Now(), hold, hold+5*time.Second)
	if err == nil && strings.HasPrefix(c.Path, "direct") != pair.Direct {
		err = fmt.Errorf("ended on path %q", c.Path)
	}
	if err != nil {
		w.KeepLogs()
		err = fmt.Errorf("%w (logs in %s)", err, w.LogDir)
	}
	return c, err
}

// loadAvg is /proc/loadavg's first three fields: the report says how busy
// the machine was, since other work shifts the times.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
