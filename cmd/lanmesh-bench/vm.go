package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/bench"
	"github.com/lanmesh/lanmesh/internal/vmtest"
)

// The VM benchmarks: router.md (issue 16) and the VM section of
// throughput.md (issue 17). Guests run under TCG, so transfers are
// short and few by default.
var (
	vmReps   = flag.Int("vm-n", 3, "router, vm: transfers per data plane in the guest")
	vmDur    = flag.Duration("vm-t", 10*time.Second, "router, vm: duration of one transfer in the guest")
	vmArches = flag.String("vm-arch", "amd64,mipsle", "vm: comma-separated guests: amd64 (x86-64), mipsle (MIPS Malta)")
)

func parseArches(s string) ([]vmtest.Arch, error) {
	var as []vmtest.Arch
	for _, f := range strings.Split(s, ",") {
		switch f = strings.TrimSpace(f); f {
		case "amd64", "mipsle":
			as = append(as, vmtest.Arch(f))
		case "":
		default:
			return nil, fmt.Errorf("-vm-arch: unknown guest %q (want amd64, mipsle)", f)
		}
	}
	if len(as) == 0 {
		return nil, errors.New("-vm-arch: no guest named (want amd64, mipsle)")
	}
	return as, nil
}

// runVMBenches runs router and vm when -only asks for them and returns
// what failed.
func runVMBenches(ctx context.Context, log *slog.Logger, out string, want map[string]bool, absBin string) ([]string, error) {
	var failed []string
	if want["router"] {
		res, err := bench.RunRouter(ctx, bench.VMOptions{BinDir: absBin, Reps: *vmReps, Duration: *vmDur, Log: log})
		if err != nil {
			failed = append(failed, "router: "+err.Error())
		}
		if res != nil {
			if err := writeReport(out, "router.md", func(b *bytes.Buffer) error { return bench.WriteRouterReport(b, res) }); err != nil {
				return failed, err
			}
			log.Info("bench: router written", "file", filepath.Join(out, "router.md"))
			for _, f := range res.Failed() {
				failed = append(failed, "router: "+f)
			}
		}
	}
	if want["vm"] {
		arches, err := parseArches(*vmArches)
		if err != nil {
			return failed, err
		}
		res, err := bench.RunVM(ctx, bench.VMOptions{BinDir: absBin, Reps: *vmReps, Duration: *vmDur, Arches: arches, Log: log})
		if err != nil {
			failed = append(failed, "vm: "+err.Error())
		}
		if res != nil {
			var sec bytes.Buffer
			if err := bench.WriteVMSection(&sec, res); err != nil {
				return failed, err
			}
			if err := writeThroughput(out, nil, sec.Bytes()); err != nil {
				return failed, err
			}
			log.Info("bench: vm section written", "file", filepath.Join(out, "throughput.md"))
			for _, f := range res.Failed() {
				failed = append(failed, "vm: "+f)
			}
		}
	}
	return failed, nil
}

// writeThroughput writes throughput.md from its two parts: host is the
// host benchmark's report (nil: keep the file's), vm the VM section (nil:
// keep the file's), so each benchmark rewrites only its own part.
func writeThroughput(out string, host, vm []byte) error {
	old, err := os.ReadFile(filepath.Join(out, "throughput.md"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read throughput.md: %w", err)
	}
	if host == nil {
		host = old // its VM section, if any, is replaced in place
	}
	if vm == nil {
		vm = bench.ExtractVMSection(old)
	}
	return writeResult(out, "throughput.md", bench.SpliceVMSection(host, vm))
}
