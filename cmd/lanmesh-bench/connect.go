package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"

	"github.com/lanmesh/lanmesh/internal/bench"
)

// runConnect writes connect.md (time to first packet and to a direct
// path per NAT pairing) when -only asks for it; it returns what failed.
func runConnect(ctx context.Context, log *slog.Logger, out string, want map[string]bool, absBin string, n int) ([]string, error) {
	if !want["connect"] {
		return nil, nil
	}
	var failed []string
	res, err := bench.RunConnect(ctx, bench.ConnectOptions{BinDir: absBin, Reps: n, Log: log})
	if err != nil {
		failed = append(failed, "connect: "+err.Error())
	}
	if res == nil {
		return failed, nil
	}
	var md bytes.Buffer
	if err := bench.WriteConnectReport(&md, res); err != nil {
		return failed, err
	}
	if err := writeResult(out, "connect.md", md.Bytes()); err != nil {
		return failed, err
	}
	log.Info("bench: connect written", "file", filepath.Join(out, "connect.md"))
	for _, f := range res.Failed() {
		failed = append(failed, "connect: "+f)
	}
	return failed, nil
}
