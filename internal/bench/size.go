package bench

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// RouterBudget is the stripped size limit of lanmesh for linux/mipsle
// (DESIGN.md): Tailscale's smallest build is 14.0 MiB.
const RouterBudget = 12 << 20

// SizeTarget is one binary the size report measures.
type SizeTarget struct {
	Name     string // binary name, e.g. "lanmesh"
	Platform string // "<os>_<arch>", the directory under the bin dir
	Budget   int64  // 0: no budget
	Router   bool   // must not link RouterForbidden
	Optional bool   // a missing binary is reported, not an error
}

// DefaultSizeTargets are what `make build` cross-compiles.
var DefaultSizeTargets = []SizeTarget{
	{Name: "lanmesh", Platform: "linux_mipsle", Budget: RouterBudget, Router: true},
	{Name: "lanmesh", Platform: "linux_mips", Router: true},
	{Name: "lanmesh", Platform: "linux_arm", Router: true},
	{Name: "lanmesh", Platform: "linux_arm64", Router: true},
	{Name: "lanmesh", Platform: "linux_amd64", Router: true},
	{Name: "lanmesh-coord", Platform: "linux_amd64"},
	{Name: "lanmesh-derp", Platform: "linux_amd64", Optional: true},
}

// SizeRow is the measurement of one target.
type SizeRow struct {
	Target    SizeTarget
	Size      int64 // -1 when missing
	Stripped  bool
	Forbidden []string
	Err       error // could not measure
}

// Failed reports whether the row breaks a rule.
func (r SizeRow) Failed() bool {
	if r.Err != nil {
		return !(r.Target.Optional && errors.Is(r.Err, fs.ErrNotExist))
	}
	return !r.Stripped || len(r.Forbidden) > 0 || (r.Target.Budget > 0 && r.Size > r.Target.Budget)
}

// MeasureSizes measures each target under binDir.
func MeasureSizes(binDir string, targets []SizeTarget) []SizeRow {
	rows := make([]SizeRow, 0, len(targets))
	for _, t := range targets {
		r := SizeRow{Target: t, Size: -1}
		p := filepath.Join(binDir, t.Platform, t.Name)
		st, err := os.Stat(p)
		if err != nil {
			r.Err = fmt.Errorf("stat %s (run `make build`): %w", p, err)
			rows = append(rows, r)
			continue
		}
		r.Size = st.Size()
		if r.Stripped, err = Stripped(p); err != nil {
			r.Err = err
		} else if t.Router {
			r.Forbidden, r.Err = ForbiddenLinks(p, RouterForbidden)
		}
		rows = append(rows, r)
	}
	return rows
}

// WriteSizeReport writes size.md and returns an error naming every broken
// rule, so `make bench` fails loudly past the budget.
func WriteSizeReport(w io.Writer, env Env, rows []SizeRow) error {
	if err := env.WriteHeader(w, "Binary sizes"); err != nil {
		return err
	}
	fmt.Fprintf(w, "Stripped (`-trimpath -ldflags \"-s -w\"`, `CGO_ENABLED=0`) sizes. "+
		"Budget: `lanmesh` for linux/mipsle (GOMIPS=softfloat) at most %s (DESIGN.md). "+
		"Router binaries must not link %s (checked in the binary's pclntab and build info, as `go tool nm` / `go version -m` would).\n\n",
		MiB(RouterBudget), strings.Join(RouterForbidden, ", "))

	t := Table{Header: []string{"binary", "platform", "size", "bytes", "budget", "headroom", "forbidden packages", "status"}}
	var problems []string
	for _, r := range rows {
		name, plat := r.Target.Name, strings.Replace(r.Target.Platform, "_", "/", 1)
		if r.Err != nil {
			status := "ERROR"
			if !r.Failed() {
				status = "not built (optional)"
			} else {
				problems = append(problems, fmt.Sprintf("%s %s: %v", name, plat, r.Err))
			}
			t.Add(name, plat, "-", "-", budgetCell(r.Target.Budget), "-", "-", status+": "+r.Err.Error())
			continue
		}
		var bad []string
		headroom := "-"
		if r.Target.Budget > 0 {
			headroom = MiB(r.Target.Budget - r.Size)
			if r.Size > r.Target.Budget {
				bad = append(bad, fmt.Sprintf("OVER BUDGET by %s", MiB(r.Size-r.Target.Budget)))
			}
		}
		if !r.Stripped {
			bad = append(bad, "NOT STRIPPED")
		}
		forb := "none"
		if !r.Target.Router {
			forb = "not checked"
		}
		if len(r.Forbidden) > 0 {
			forb = strings.Join(r.Forbidden, ", ")
			bad = append(bad, "LINKS FORBIDDEN PACKAGES")
		}
		status := "ok"
		if len(bad) > 0 {
			status = strings.Join(bad, "; ")
			problems = append(problems, fmt.Sprintf("%s %s: %s", name, plat, status))
		}
		t.Add(name, plat, MiB(r.Size), fmt.Sprint(r.Size), budgetCell(r.Target.Budget), headroom, forb, status)
	}
	if _, err := t.WriteTo(w); err != nil {
		return err
	}
	if len(problems) > 0 {
		fmt.Fprintf(w, "\n**FAILED**:\n\n")
		for _, p := range problems {
			fmt.Fprintf(w, "- %s\n", p)
		}
		fmt.Fprintf(w, "\n`go build -ldflags=-dumpdep ./cmd/lanmesh 2>&1 | grep -i reflect` shows what pulled in a reflect-method mark.\n")
		return fmt.Errorf("size check failed: %s", strings.Join(problems, "; "))
	}
	_, err := fmt.Fprintf(w, "\nResult: all within budget, no forbidden packages.\n")
	return err
}

func budgetCell(b int64) string {
	if b <= 0 {
		return "-"
	}
	return MiB(b)
}

// PackageGoal is the size goal of the mipsel_24kc lanmesh .ipk (the OpenWrt
// issue: Tailscale's extra-small build is 4.49 MiB gzipped).
const PackageGoal = 4 << 20

// PackageRow is one .ipk that make packages wrote.
type PackageRow struct {
	File string
	Size int64
}

// MeasurePackages lists the .ipk files in dir (bin/packages).
func MeasurePackages(dir string) ([]PackageRow, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.ipk"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no .ipk in %s (run make packages)", dir)
	}
	var rows []PackageRow
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		rows = append(rows, PackageRow{File: filepath.Base(p), Size: st.Size()})
	}
	return rows, nil
}

// WritePackageReport appends the package table to size.md. The 4 MiB goal
// for the mipsel_24kc agent package is reported, not enforced: the binary
// budget above is the hard limit.
func WritePackageReport(w io.Writer, rows []PackageRow, err error) {
	fmt.Fprintf(w, "\n## OpenWrt packages (make packages)\n\n")
	if err != nil {
		fmt.Fprintf(w, "Not measured: %v\n", err)
		return
	}
	fmt.Fprintf(w, "Installable `.ipk` files. Goal: the `lanmesh` package for mipsel_24kc at most %s "+
		"(it holds the binary above, web page included, plus the init script, UCI config and uci-defaults). "+
		"internal/opkg compresses every archive with `gzip -9 -n`, as OpenWrt's ipkg-build uses the host's gzip: "+
		"Go's compress/gzip, which nfpm uses, made the mipsel_24kc package about 75 KB larger (4.22 MB at its default level), over the goal.\n\n", MiB(PackageGoal))
	t := Table{Header: []string{"package file", "size", "bytes", "goal"}}
	for _, r := range rows {
		goal := "-"
		if strings.HasPrefix(r.File, "lanmesh_") && strings.HasSuffix(r.File, "_mipsel_24kc.ipk") {
			goal = "ok"
			if r.Size > PackageGoal {
				goal = "over the " + MiB(PackageGoal) + " goal by " + MiB(r.Size-PackageGoal)
			}
		}
		t.Add(r.File, MiB(r.Size), fmt.Sprint(r.Size), goal)
	}
	_, _ = t.WriteTo(w)
}
