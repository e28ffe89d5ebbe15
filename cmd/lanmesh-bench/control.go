package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/bench"
)

// The control-plane benchmarks of issue 11: firewall.md, dns.md and
// coord-scale.md.
var (
	dnsDur     = flag.Duration("dns-t", 3*time.Second, "dns: duration of one load run per server")
	dnsWorkers = flag.Int("dns-c", 16, "dns: concurrent clients of the load generator")
	coordSizes = flag.String("coord-nodes", "1000,10000", "coordscale: comma-separated simulated node counts")
)

// runControl runs the wanted control-plane benchmarks, writes their
// tables and returns what failed. n is the DNS repetitions (-n).
func runControl(ctx context.Context, log *slog.Logger, out string, want map[string]bool, n int) ([]string, error) {
	var failed []string
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable (re-executed for child processes): %w", err)
	}
	if want["firewall"] {
		res, err := bench.RunFirewall(ctx)
		if err != nil {
			failed = append(failed, err.Error())
		} else {
			if err := writeReport(out, "firewall.md", func(b *bytes.Buffer) error { return bench.WriteFirewallReport(b, res) }); err != nil {
				return failed, err
			}
			log.Info("bench: firewall written", "file", filepath.Join(out, "firewall.md"))
			for _, f := range res.Failed() {
				failed = append(failed, "firewall: "+f)
			}
		}
	}
	if want["dns"] {
		res, err := bench.RunDNS(ctx, bench.DNSOptions{Reps: n, Duration: *dnsDur, Workers: *dnsWorkers, Self: self, Log: log})
		if err != nil {
			failed = append(failed, err.Error())
		}
		if err == nil || len(res.Servers[0].QPS)+len(res.Servers[1].QPS) > 0 {
			if err := writeReport(out, "dns.md", func(b *bytes.Buffer) error { return bench.WriteDNSReport(b, res) }); err != nil {
				return failed, err
			}
			log.Info("bench: dns written", "file", filepath.Join(out, "dns.md"))
		}
		for _, f := range res.Failed() {
			failed = append(failed, "dns: "+f)
		}
	}
	if want["coordscale"] {
		sizes, err := parseSizes(*coordSizes)
		if err != nil {
			return failed, err
		}
		res := bench.RunCoordScale(ctx, bench.CoordScaleOptions{Sizes: sizes, Self: self, Log: log})
		if err := writeReport(out, "coord-scale.md", func(b *bytes.Buffer) error { return bench.WriteCoordScaleReport(b, res) }); err != nil {
			return failed, err
		}
		log.Info("bench: coord scale written", "file", filepath.Join(out, "coord-scale.md"))
		for _, f := range res.Failed() {
			failed = append(failed, "coord scale: "+f)
		}
	}
	return failed, nil
}

func writeReport(out, name string, render func(*bytes.Buffer) error) error {
	var md bytes.Buffer
	if err := render(&md); err != nil {
		return err
	}
	return writeResult(out, name, md.Bytes())
}

func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("-coord-nodes: %q is not a positive node count", f)
		}
		sizes = append(sizes, v)
	}
	if len(sizes) == 0 {
		return nil, fmt.Errorf("-coord-nodes: no node counts")
	}
	return sizes, nil
}
