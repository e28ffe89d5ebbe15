package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/lanmesh/lanmesh/internal/bench"
)

// runPolicyCompat checks every policy file under dir as `lanmesh-coord
// policy check` does and writes the counts into policy-compat.md's
// corpus section. A crash is a failure.
func runPolicyCompat(log *slog.Logger, out, dir string) ([]string, error) {
	res, err := bench.RunPolicyCompat(dir)
	if err != nil {
		return nil, err
	}
	var md bytes.Buffer
	cmd := fmt.Sprintf("lanmesh-bench -only policycompat -policy-dir %s", dir)
	if err := bench.WritePolicyCompatReport(&md, res, bench.CurrentEnv(), cmd); err != nil {
		return nil, err
	}
	file := filepath.Join(out, "policy-compat.md")
	if err := bench.UpdatePolicyCompatFile(file, md.Bytes()); err != nil {
		return nil, fmt.Errorf("write %s: %w", file, err)
	}
	refused := res.Files - res.Accepted - len(res.Crashed)
	log.Info("bench: policycompat written", "file", file, "documents", res.Files, "accepted", res.Accepted,
		"refused", refused, "crashed", len(res.Crashed))
	var failed []string
	for _, c := range res.Crashed {
		failed = append(failed, "policycompat: crashed: "+c)
	}
	return failed, nil
}
