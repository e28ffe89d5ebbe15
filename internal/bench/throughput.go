package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Data plane names, in table order.
const (
	ModePlain   = "plain routing"
	ModeWireGo  = "wireguard-go"
	ModeLanmesh = "lanmesh"
)

// Goals the lanmesh row is held to (DESIGN.md, SECURITY.md).
const (
	GoalVsWireGo  = 1.0      // throughput at least stock wireguard-go's
	GoalPeakRSS   = 32 << 20 // peak RSS per agent during a transfer
	gbit          = 1e9
	defaultIperfP = 5201
)

// ModeResult is what one data plane measured over all repetitions.
type ModeResult struct {
	Mode    string
	Note    string   // how it was set up
	BitsPS  Sample   // one value per successful run
	PeakRSS int64    // max VmHWM over runs and routers; 0 when not applicable
	RSSName string   // which processes PeakRSS is of
	Paths   []string // distinct paths seen after the runs (lanmesh: direct/relay)
	Errs    []string
}

// ThroughputResult is one benchmark run.
type ThroughputResult struct {
	Env      Env
	Reps     int
	Duration time.Duration
	Modes    []ModeResult
	Setup    string       // what was measured, for the report's preamble
	Relay    *RelayResult // ModeRelay, measured in its own world; nil when not run
}

func (r *ThroughputResult) mode(name string) *ModeResult {
	for i := range r.Modes {
		if r.Modes[i].Mode == name {
			return &r.Modes[i]
		}
	}
	return nil
}

// Failed lists modes that could not be measured in every repetition.
func (r *ThroughputResult) Failed() []string {
	var f []string
	for _, m := range r.Modes {
		if len(m.Errs) > 0 {
			f = append(f, fmt.Sprintf("%s: %s", m.Mode, m.Errs[0]))
		}
	}
	if r.Relay != nil && len(r.Relay.Errs) > 0 {
		f = append(f, fmt.Sprintf("%s: %s", ModeRelay, r.Relay.Errs[0]))
	}
	return f
}

func gbps(v float64) string { return fmt.Sprintf("%.2f", v/gbit) }

// WriteThroughputReport writes throughput.md.
func WriteThroughputReport(w io.Writer, r *ThroughputResult) error {
	if err := r.Env.WriteHeader(w, "Throughput a1 -> b1"); err != nil {
		return err
	}
	fmt.Fprintf(w, "TCP, `iperf3 -c b1 -t %s` from host a1 on LAN A to host b1 on LAN B, %d interleaved repetitions per data plane; "+
		"median and min-max spread. Peak RSS is VmHWM of the data plane's processes on both routers (reset before each transfer), max over runs.\n\n%s\n\n",
		r.Duration, r.Reps, r.Setup)

	var ref, plain float64
	if m := r.mode(ModeWireGo); m != nil {
		ref = m.BitsPS.Median()
	}
	if m := r.mode(ModePlain); m != nil {
		plain = m.BitsPS.Median()
	}
	t := Table{Header: []string{"data plane", "median Gbit/s", "min-max Gbit/s", "runs", "vs wireguard-go", "vs plain routing", "peak RSS", "notes"}}
	for _, m := range r.Modes {
		med, spread, vsWG, vsPlain := "-", "-", "-", "-"
		if len(m.BitsPS) > 0 {
			med = gbps(m.BitsPS.Median())
			spread = gbps(m.BitsPS.Min()) + "-" + gbps(m.BitsPS.Max())
			vsWG = Ratio(m.BitsPS.Median(), ref)
			vsPlain = Ratio(m.BitsPS.Median(), plain)
		}
		rss := "-"
		if m.PeakRSS > 0 {
			rss = MiB(m.PeakRSS)
		}
		note := m.Note
		if len(m.Paths) > 0 {
			note += "; path after runs: " + strings.Join(m.Paths, ", ")
		}
		if len(m.Errs) > 0 {
			note = fmt.Sprintf("ERROR (%d of %d runs failed): %s", len(m.Errs), r.Reps, m.Errs[0])
		}
		t.Add(m.Mode, med, spread, fmt.Sprintf("%d/%d", len(m.BitsPS), r.Reps), vsWG, vsPlain, rss, note)
	}
	if _, err := t.WriteTo(w); err != nil {
		return err
	}
	if err := writeRelaySection(w, r); err != nil {
		return err
	}

	fmt.Fprintf(w, "\n## Goals (lanmesh)\n\n")
	g := Table{Header: []string{"goal", "target", "measured", "met"}}
	if m := r.mode(ModeLanmesh); m != nil && len(m.BitsPS) > 0 {
		x := 0.0
		if ref > 0 {
			x = m.BitsPS.Median() / ref
		}
		g.Add("throughput vs stock wireguard-go", fmt.Sprintf(">= %.1fx", GoalVsWireGo), Ratio(m.BitsPS.Median(), ref), yesNo(ref > 0 && x >= GoalVsWireGo))
		g.Add("peak RSS per agent during transfer", "<= "+MiB(GoalPeakRSS), MiB(m.PeakRSS), yesNo(m.PeakRSS > 0 && m.PeakRSS <= GoalPeakRSS))
	} else {
		g.Add("throughput vs stock wireguard-go", fmt.Sprintf(">= %.1fx", GoalVsWireGo), "not measured", "NO")
		g.Add("peak RSS per agent during transfer", "<= "+MiB(GoalPeakRSS), "not measured", "NO")
	}
	if _, err := g.WriteTo(w); err != nil {
		return err
	}
	if f := r.Failed(); len(f) > 0 {
		fmt.Fprintf(w, "\n**FAILED to measure**:\n\n- %s\n", strings.Join(f, "\n- "))
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}
