package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// The VM benchmarks run the agent inside QEMU guests under TCG (package
// vmtest): the MIPS Malta router of the OpenWrt issue (router.md) and the
// kernel-vs-userspace comparison of the kernel-backend issue (the VM
// section of throughput.md). TCG emulates every guest instruction, so a
// guest's absolute throughput says nothing about real hardware; only
// ratios between data planes measured in the same guest, in the same
// run, carry over. The tables lead with the ratios and list Mbit/s as
// context only.

// VMPlane is one data plane measured inside a guest.
type VMPlane struct {
	Name   string
	Note   string
	BitsPS Sample // one value per transfer
	// Memory of the plane's process in the guest (lanmesh agent or stock
	// wireguard-go), from /proc/PID/status in the guest. Idle: joined,
	// tunnel up, before any transfer. Load: VmRSS sampled in the middle
	// of each transfer and VmHWM after it (reset before it with
	// clear_refs), max over transfers. 0: not measured.
	IdleRSS, IdleHWM int64
	LoadRSS, LoadHWM int64
	Path             string // lanmesh: path to the far end after the transfers
	// Tries is how many transfers were attempted when not the run's Reps.
	Tries int
	Errs  []string
}

// runs formats successful/attempted transfers.
func (p *VMPlane) runs(reps int) string {
	if p.Tries > 0 {
		reps = p.Tries
	}
	return fmt.Sprintf("%d/%d", len(p.BitsPS), reps)
}

func (p *VMPlane) addLoad(bps float64, rss, hwm int64) {
	p.BitsPS = append(p.BitsPS, bps)
	p.LoadRSS = max(p.LoadRSS, rss)
	p.LoadHWM = max(p.LoadHWM, hwm)
}

// VMRun is one guest boot and the planes measured in it.
type VMRun struct {
	Arch    string // as the report names it: "x86-64", "MIPS (Malta 4Kc)"
	Kernel  string // Debian kernel package
	Machine string // QEMU machine and RAM
	Boot    time.Duration
	Planes  []VMPlane
	Errs    []string // setup errors that stopped the run
}

func (r *VMRun) plane(name string) *VMPlane {
	for i := range r.Planes {
		if r.Planes[i].Name == name {
			return &r.Planes[i]
		}
	}
	return nil
}

// Failed lists what could not be measured.
func (r *VMRun) Failed() []string {
	var f []string
	for _, e := range r.Errs {
		f = append(f, r.Arch+": "+firstLine(e))
	}
	for _, p := range r.Planes {
		if len(p.Errs) > 0 {
			f = append(f, fmt.Sprintf("%s: %s: %s", r.Arch, p.Name, firstLine(p.Errs[0])))
		}
	}
	return f
}

// firstLine keeps a report's list items on one line; the full error is
// in the benchmark's log.
func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// ParseProcStatusKB returns a "Name:  <n> kB" field of /proc/PID/status
// (VmRSS, VmHWM, ...) in bytes.
func ParseProcStatusKB(status []byte, field string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s line %q: want \"%s: <n> kB\"", field, sc.Text(), field)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 || kb > 1<<40 {
			return 0, fmt.Errorf("%s value %q: want a kB count", field, f[0])
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read status: %w", err)
	}
	return 0, fmt.Errorf("no %s line in status (kernel thread or exited process?)", field)
}

// parseRSS returns VmRSS and VmHWM from /proc/PID/status.
func parseRSS(status []byte) (rss, hwm int64, err error) {
	if rss, err = ParseProcStatusKB(status, "VmRSS"); err != nil {
		return 0, 0, err
	}
	if hwm, err = ParseProcStatusKB(status, "VmHWM"); err != nil {
		return 0, 0, err
	}
	return rss, hwm, nil
}

func mbps(v float64) string { return fmt.Sprintf("%.1f", v/1e6) }

// mibOrDash is MiB, or "-" when n was not measured.
func mibOrDash(n int64) string {
	if n <= 0 {
		return "-"
	}
	return MiB(n)
}

// The VM section of throughput.md sits between these markers, so the
// host benchmark (-only throughput) and the VM one (-only vm) each
// rewrite their own part and keep the other's.
const (
	vmSectionBegin = "<!-- lanmesh-bench -only vm: begin (the host throughput run keeps this section) -->"
	vmSectionEnd   = "<!-- lanmesh-bench -only vm: end -->"
)

// ExtractVMSection returns the VM section of a throughput.md, markers
// included, or nil when it has none (or only half of one).
func ExtractVMSection(doc []byte) []byte {
	i := bytes.Index(doc, []byte(vmSectionBegin))
	if i < 0 {
		return nil
	}
	j := bytes.Index(doc[i:], []byte(vmSectionEnd))
	if j < 0 {
		return nil
	}
	end := i + j + len(vmSectionEnd)
	out := append([]byte(nil), doc[i:end]...)
	return append(out, '\n')
}

// SpliceVMSection puts section (as ExtractVMSection returns it, markers
// included) into doc: in place of doc's own VM section, or at its end.
// A nil section leaves doc as it is.
func SpliceVMSection(doc, section []byte) []byte {
	if section == nil {
		return doc
	}
	if old := ExtractVMSection(doc); old != nil {
		i := bytes.Index(doc, []byte(vmSectionBegin))
		rest := doc[i+len(old)-1:] // old ends in the '\n' Extract added
		rest = bytes.TrimPrefix(rest, []byte("\n"))
		out := append([]byte(nil), doc[:i]...)
		out = append(out, section...)
		return append(out, rest...)
	}
	out := bytes.TrimRight(append([]byte(nil), doc...), "\n")
	if len(out) > 0 {
		out = append(out, "\n\n"...)
	}
	return append(out, section...)
}

// Backend plane names of the VM section.
const (
	PlaneKernel    = "lanmesh, kernel backend"
	PlaneUserspace = "lanmesh, userspace backend"
	// PlaneNoTunnel is the same transfer to the far end's WAN address,
	// through the NAT box only: the guest's ceiling (sender, TCP stack,
	// NIC). A tunnel close to it is limited by the guest's TCP, not its
	// WireGuard.
	PlaneNoTunnel = "no tunnel (guest TCP via the NAT box)"
)

// VMResult is the kernel-vs-userspace benchmark over one or more guests.
type VMResult struct {
	Env      Env
	Reps     int
	Duration time.Duration
	Setup    string
	Runs     []VMRun
}

// Failed lists what could not be measured.
func (r *VMResult) Failed() []string {
	var f []string
	for i := range r.Runs {
		f = append(f, r.Runs[i].Failed()...)
	}
	return f
}

// WriteVMSection writes the VM section of throughput.md, markers
// included.
func WriteVMSection(w io.Writer, r *VMResult) error {
	var b bytes.Buffer
	b.WriteString(vmSectionBegin + "\n")
	fmt.Fprintf(&b, "## In VMs: kernel vs userspace WireGuard backend\n\n")
	fmt.Fprintf(&b, "- date: %s\n- host: kernel %s, %d CPUs (%s), %s\n\n",
		r.Env.Date.Format(time.RFC3339), r.Env.Kernel, r.Env.CPUs, r.Env.CPUModel, r.Env.GoVersion)
	fmt.Fprintf(&b, "%s\n\n", r.Setup)
	fmt.Fprintf(&b, "**The guests run under QEMU TCG** (every guest instruction emulated on the host): absolute Mbit/s say nothing "+
		"about real x86-64 or MIPS hardware and are listed as context only. The ratio of the two backends, measured in the same "+
		"guest in the same run, is the result. %d transfers of %s per backend, median and min-max.\n\n", r.Reps, r.Duration)
	t := Table{Header: []string{"guest", "backend", "vs userspace", "median Mbit/s (TCG)", "min-max", "runs", "agent VmRSS idle", "agent VmHWM idle", "agent VmRSS during transfer", "agent VmHWM during transfer", "notes"}}
	for _, run := range r.Runs {
		var ref float64
		if u := run.plane(PlaneUserspace); u != nil {
			ref = u.BitsPS.Median()
		}
		if len(run.Planes) == 0 {
			t.Add(run.Arch, "-", "-", "-", "-", "-", "-", "-", "-", "-", "ERROR: "+strings.Join(run.Errs, "; "))
			continue
		}
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
			t.Add(run.Arch, p.Name, vs, med, spread, p.runs(r.Reps),
				mibOrDash(p.IdleRSS), mibOrDash(p.IdleHWM), mibOrDash(p.LoadRSS), mibOrDash(p.LoadHWM), note)
		}
	}
	if _, err := t.WriteTo(&b); err != nil {
		return err
	}
	b.WriteString("\n")
	k := Table{Header: []string{"guest", "kernel", "QEMU", "boot to shell", "kernel / userspace throughput"}}
	for _, run := range r.Runs {
		ratio := "n/a"
		kp, up := run.plane(PlaneKernel), run.plane(PlaneUserspace)
		if kp != nil && up != nil {
			ratio = Ratio(kp.BitsPS.Median(), up.BitsPS.Median())
		}
		k.Add(run.Arch, run.Kernel, run.Machine, run.Boot.Round(100*time.Millisecond).String(), ratio)
	}
	if _, err := k.WriteTo(&b); err != nil {
		return err
	}
	if f := r.Failed(); len(f) > 0 {
		fmt.Fprintf(&b, "\n**FAILED to measure**:\n\n- %s\n", strings.Join(f, "\n- "))
	}
	b.WriteString(vmSectionEnd + "\n")
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write VM section: %w", err)
	}
	return nil
}
