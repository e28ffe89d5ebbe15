package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ModeRelay is lanmesh forced onto the relay (coord's embedded one): no
// UDP leaves router A's NAT, only TCP 443.
const ModeRelay = "lanmesh relayed"

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat: 100
// on every Linux architecture lanmesh targets.
const clockTicks = 100

// RelayResult is the relayed throughput and what it cost the relay.
type RelayResult struct {
	BitsPS  Sample   // one value per run
	CPUPerG Sample   // relay (coord) CPU seconds per Gbit moved, per run
	Paths   []string // A's path to B after the runs
	Note    string
	Errs    []string
}

// ParseProcStatCPU returns utime+stime in clock ticks from the contents
// of /proc/PID/stat. The command name may hold spaces and parentheses, so
// fields are counted after the last ')'.
func ParseProcStatCPU(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc/PID/stat: no ')' after the command name")
	}
	f := bytes.Fields(b[i+1:])
	// After ")": state is field 3 of the file, utime 14 and stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/PID/stat: %d fields after the command name, want at least 13", len(f))
	}
	u, err := strconv.ParseUint(string(f[11]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/PID/stat: utime %q: %w", f[11], err)
	}
	s, err := strconv.ParseUint(string(f[12]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/PID/stat: stime %q: %w", f[12], err)
	}
	return u + s, nil
}

// writeRelaySection appends the relayed rows to throughput.md.
func writeRelaySection(w io.Writer, r *ThroughputResult) error {
	rr := r.Relay
	if rr == nil {
		return nil
	}
	fmt.Fprintf(w, "\n## Relayed (%s)\n\n%s\n\n", ModeRelay, rr.Note)
	var direct float64
	if m := r.mode(ModeLanmesh); m != nil {
		direct = m.BitsPS.Median()
	}
	t := Table{Header: []string{"data plane", "median Gbit/s", "min-max Gbit/s", "runs", "vs lanmesh direct", "relay CPU-seconds per Gbit (= cores per Gbit/s)", "min-max", "notes"}}
	med, spread, vs, cpu, cpuSpread := "-", "-", "-", "-", "-"
	if len(rr.BitsPS) > 0 {
		med, spread = gbps(rr.BitsPS.Median()), gbps(rr.BitsPS.Min())+"-"+gbps(rr.BitsPS.Max())
		vs = Ratio(rr.BitsPS.Median(), direct)
	}
	if len(rr.CPUPerG) > 0 {
		cpu = fmt.Sprintf("%.2f", rr.CPUPerG.Median())
		cpuSpread = fmt.Sprintf("%.2f-%.2f", rr.CPUPerG.Min(), rr.CPUPerG.Max())
	}
	note := "path after runs: "
	for i, p := range rr.Paths {
		if i > 0 {
			note += ", "
		}
		note += p
	}
	if len(rr.Errs) > 0 {
		note = fmt.Sprintf("ERROR (%d of %d runs failed): %s", len(rr.Errs), r.Reps, rr.Errs[0])
	}
	t.Add(ModeRelay, med, spread, fmt.Sprintf("%d/%d", len(rr.BitsPS), r.Reps), vs, cpu, cpuSpread, note)
	_, err := t.WriteTo(w)
	return err
}
