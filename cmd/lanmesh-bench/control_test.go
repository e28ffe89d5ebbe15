package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/bench"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// TestMain lets the test binary serve as the re-executed child, as
// lanmesh-bench does, so the child paths run for real.
func TestMain(m *testing.M) {
	if child, err := bench.RunChild(context.Background()); child {
		if err != nil {
			os.Stderr.WriteString("child: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseSizes(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []int
		err  bool
	}{
		{"1000,10000", []int{1000, 10000}, false},
		{" 5 , ", []int{5}, false},
		{"", nil, true},
		{"10,x", nil, true},
		{"0", nil, true},
	} {
		got, err := parseSizes(tt.in)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("parseSizes(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// dns and coordscale through run, with the agent's DNS server and the
// load test in re-executed children (this test binary).
func TestRunControlInChildren(t *testing.T) {
	testenv.RequireTool(t, "dnsmasq", "dnsmasq-base")
	defer func(d time.Duration, s string) { *dnsDur, *coordSizes = d, s }(*dnsDur, *coordSizes)
	*dnsDur, *coordSizes = 200*time.Millisecond, "30"
	out := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := run(context.Background(), log, t.TempDir(), out, "dns,coordscale", "", 1, time.Second); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string][]string{
		"dns.md":         {"in a process of its own", "| dnsmasq |", "1/1"},
		"coord-scale.md": {"| 30 | 30/30 |", "fresh process of its own"},
	} {
		b, err := os.ReadFile(filepath.Join(out, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q:\n%s", file, w, b)
			}
		}
	}
}
