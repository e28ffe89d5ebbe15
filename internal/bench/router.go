package bench

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// Goals of the router agent in the 128 MiB MIPS guest (issue 16).
const (
	GoalRouterIdleRSS = 16 << 20 // agent VmRSS, joined and idle
	GoalRouterLoadRSS = 24 << 20 // agent VmHWM during a transfer
)

// Plane names of router.md.
const (
	PlaneRouterAgent = "lanmesh agent (packaged, UCI, userspace)"
	PlaneRouterWGGo  = "stock wireguard-go"
)

// RouterResult is router.md: the packaged agent in the MIPS guest against
// stock wireguard-go in the same guest.
type RouterResult struct {
	Env      Env
	Reps     int
	Duration time.Duration
	Package  string // .ipk file name and size
	Setup    string
	Run      VMRun
}

// Failed lists what could not be measured.
func (r *RouterResult) Failed() []string { return r.Run.Failed() }

// WriteRouterReport writes router.md.
func WriteRouterReport(w io.Writer, r *RouterResult) error {
	if err := r.Env.WriteHeader(w, "lanmesh on a router's CPU: MIPS Malta VM"); err != nil {
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n\n", r.Setup)
	fmt.Fprintf(&b, "**The guest runs under QEMU TCG** (every MIPS instruction emulated on the x86-64 host): its absolute Mbit/s say "+
		"nothing about a real router's CPU and are listed as context only. Throughput is reported relative to stock wireguard-go "+
		"in the same guest, in the same run, with transfers of the two data planes interleaved (%d each, %s each). "+
		"Memory figures are the guest kernel's own accounting and do carry over.\n\n", r.Reps, r.Duration)
	run := &r.Run
	var ref float64
	if p := run.plane(PlaneRouterWGGo); p != nil {
		ref = p.BitsPS.Median()
	}
	t := Table{Header: []string{"data plane", "vs stock wireguard-go", "median Mbit/s (TCG)", "min-max", "runs", "VmRSS idle", "VmHWM idle", "VmRSS during transfer", "VmHWM during transfer", "notes"}}
	for _, p := range run.Planes {
		med, spread, vs := "-", "-", "-"
		if len(p.BitsPS) > 0 {
			med = mbps(p.BitsPS.Median())
			spread = mbps(p.BitsPS.Min()) + "-" + mbps(p.BitsPS.Max())
			vs = Ratio(p.BitsPS.Median(), ref)
		}
		note := p.Note
		if p.Path != "" {
			note += "; path: " + p.Path
		}
		if len(p.Errs) > 0 {
			note = fmt.Sprintf("ERROR (%d errors): %s", len(p.Errs), p.Errs[0])
		}
		t.Add(p.Name, vs, med, spread, p.runs(r.Reps),
			mibOrDash(p.IdleRSS), mibOrDash(p.IdleHWM), mibOrDash(p.LoadRSS), mibOrDash(p.LoadHWM), note)
	}
	if len(run.Planes) == 0 {
		t.Add("-", "-", "-", "-", "-", "-", "-", "-", "-", "ERROR: "+strings.Join(run.Errs, "; "))
	}
	if _, err := t.WriteTo(&b); err != nil {
		return err
	}
	fmt.Fprintf(&b, "\nGuest: %s, %s, boot to shell %s.\n", run.Kernel, run.Machine, run.Boot.Round(100*time.Millisecond))

	fmt.Fprintf(&b, "\n## Goals (lanmesh agent in the 128 MiB MIPS guest)\n\n")
	g := Table{Header: []string{"goal", "target", "measured", "met"}}
	a := run.plane(PlaneRouterAgent)
	if a != nil && a.IdleRSS > 0 {
		g.Add("agent RSS idle (VmRSS, joined)", "<= "+MiB(GoalRouterIdleRSS), MiB(a.IdleRSS), yesNo(a.IdleRSS <= GoalRouterIdleRSS))
	} else {
		g.Add("agent RSS idle (VmRSS, joined)", "<= "+MiB(GoalRouterIdleRSS), "not measured", "NO")
	}
	if a != nil && a.LoadHWM > 0 {
		g.Add("agent RSS under load (VmHWM during transfers)", "<= "+MiB(GoalRouterLoadRSS), MiB(a.LoadHWM), yesNo(a.LoadHWM <= GoalRouterLoadRSS))
	} else {
		g.Add("agent RSS under load (VmHWM during transfers)", "<= "+MiB(GoalRouterLoadRSS), "not measured", "NO")
	}
	if a != nil && len(a.BitsPS) > 0 && ref > 0 {
		g.Add("throughput vs stock wireguard-go, same guest", fmt.Sprintf(">= %.1fx", GoalVsWireGo), Ratio(a.BitsPS.Median(), ref), yesNo(a.BitsPS.Median() >= GoalVsWireGo*ref))
	} else {
		g.Add("throughput vs stock wireguard-go, same guest", fmt.Sprintf(">= %.1fx", GoalVsWireGo), "not measured", "NO")
	}
	if _, err := g.WriteTo(&b); err != nil {
		return err
	}
	if f := r.Failed(); len(f) > 0 {
		fmt.Fprintf(&b, "\n**FAILED to measure**:\n\n- %s\n", strings.Join(f, "\n- "))
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write router report: %w", err)
	}
	return nil
}

// IPKFiles returns the regular files of an OpenWrt .ipk's data.tar.gz
// whose paths (absolute, e.g. /usr/sbin/lanmesh) are in want. An .ipk is
// a gzipped tar holding debian-binary, control.tar.gz and data.tar.gz.
func IPKFiles(ipk []byte, want ...string) (map[string][]byte, error) {
	outer, err := tarGzFiles(ipk, func(n string) bool { return n == "data.tar.gz" })
	if err != nil {
		return nil, fmt.Errorf("ipk: %w", err)
	}
	data, ok := outer["data.tar.gz"]
	if !ok {
		return nil, errors.New("ipk: no data.tar.gz member (not an OpenWrt package?)")
	}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
	}
	got, err := tarGzFiles(data, func(n string) bool { return wanted["/"+n] })
	if err != nil {
		return nil, fmt.Errorf("ipk data.tar.gz: %w", err)
	}
	out := map[string][]byte{}
	for n, b := range got {
		out["/"+n] = b
	}
	for _, w := range want {
		if _, ok := out[w]; !ok {
			return nil, fmt.Errorf("ipk: no %s in data.tar.gz", w)
		}
	}
	return out, nil
}

// tarGzFiles reads the regular files of a gzipped tar whose cleaned,
// relative names keep accepts. Members are bounded to 64 MiB each.
func tarGzFiles(b []byte, keep func(string) bool) (map[string][]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if !keep(name) {
			continue
		}
		if h.Size > 64<<20 {
			return nil, fmt.Errorf("%s: %d bytes is too big for a package member", name, h.Size)
		}
		data, err := io.ReadAll(io.LimitReader(tr, h.Size))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = data
	}
}
