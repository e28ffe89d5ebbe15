package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// ConnectCell is one NAT pairing of the connect benchmark.
type ConnectCell struct {
	Name       string
	WantDirect bool
	Why        string // why that path is expected
	First      Sample // time to first packet, seconds
	Direct     Sample // time to direct, seconds (runs that went direct)
	Paths      []string
	Errs       []string
}

// ConnectResult is one run of the connect benchmark.
type ConnectResult struct {
	Env   Env
	Reps  int
	Load  string // load average when the run started (other work shifts the times)
	Cells []ConnectCell
}

// Failed lists cells with a failed run or a wrong final path.
func (r *ConnectResult) Failed() []string {
	var f []string
	for _, c := range r.Cells {
		if len(c.Errs) > 0 {
			f = append(f, fmt.Sprintf("%s: %s", c.Name, c.Errs[0]))
		}
	}
	return f
}

func msOf(s Sample) string {
	if len(s) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", s.Median()*1000)
}

func spreadOf(s Sample) string {
	if len(s) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f-%.0f", s.Min()*1000, s.Max()*1000)
}

// WriteConnectReport writes connect.md.
func WriteConnectReport(w io.Writer, r *ConnectResult) error {
	if err := r.Env.WriteHeader(w, "Connection setup per NAT type"); err != nil {
		return err
	}
	fmt.Fprintf(w, "Each run is a fresh testbed world (real coord and agents) with the NAT boxes named in the pair (router A's first). "+
		"Times count from the moment both routers have each other's approved LAN in their netmap: *first packet* is the first a1 -> b1 ping reply "+
		"(pinged every ~200 ms, so that is the resolution), *direct* is when router A's `lanmesh status --json` path to router B first starts with `direct`. "+
		"Median of %d runs, min-max in brackets, milliseconds. The matrix and its expectations are `testbed.NATPairs`, the same the e2e NAT test runs; "+
		"the NAT kinds are described in docs/nat-traversal.md.\n\n", r.Reps)
	if r.Load != "" {
		fmt.Fprintf(w, "Load average when the run started: %s (on 2 cores; the times include waiting for the CPU).\n\n", r.Load)
	}
	t := Table{Header: []string{"pair", "expected", "why", "first packet ms", "(min-max)", "time to direct ms", "(min-max)", "runs direct", "final paths", "notes"}}
	for _, c := range r.Cells {
		exp := "relay"
		if c.WantDirect {
			exp = "direct"
		}
		note := ""
		if len(c.Errs) > 0 {
			note = fmt.Sprintf("ERROR (%d of %d runs): %s", len(c.Errs), r.Reps, c.Errs[0])
		}
		t.Add(c.Name, exp, c.Why, msOf(c.First), spreadOf(c.First), msOf(c.Direct), spreadOf(c.Direct),
			fmt.Sprintf("%d/%d", len(c.Direct), r.Reps), strings.Join(c.Paths, ", "), note)
	}
	if _, err := t.WriteTo(w); err != nil {
		return err
	}
	if f := r.Failed(); len(f) > 0 {
		fmt.Fprintf(w, "\n**Failed or unexpected**:\n\n- %s\n", strings.Join(f, "\n- "))
	}
	return nil
}

// seconds converts for Sample.
func seconds(d time.Duration) float64 { return d.Seconds() }
