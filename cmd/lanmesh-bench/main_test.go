package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunRejectsBadFlags(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	out := t.TempDir()
	for _, tt := range []struct{ only, modes, want string }{
		{"sizes", "", "unknown benchmark"},
		{"throughput", "quic", "unknown data plane"},
	} {
		err := run(context.Background(), log, t.TempDir(), out, tt.only, tt.modes, 1, time.Second)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(only=%q modes=%q) = %v, want %q", tt.only, tt.modes, err, tt.want)
		}
	}
}

// An empty bin dir cannot be within budget: the run must fail and still
// leave a size.md that says why.
func TestRunSizeMissingBinaryFails(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	out := t.TempDir()
	err := run(context.Background(), log, t.TempDir(), out, "size", "", 1, time.Second)
	if err == nil {
		t.Fatal("size with no binaries succeeded")
	}
	b, rerr := os.ReadFile(filepath.Join(out, "size.md"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	if !strings.Contains(string(b), "FAILED") || !strings.Contains(string(b), "make build") {
		t.Fatalf("size.md does not say what failed:\n%s", b)
	}
}
