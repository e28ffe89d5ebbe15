package bench

import (
	"strings"
	"testing"
	"time"
)

func TestThroughputReport(t *testing.T) {
	r := &ThroughputResult{
		Env: CurrentEnv(), Reps: 3, Duration: 10 * time.Second, Setup: "test",
		Modes: []ModeResult{
			{Mode: ModePlain, BitsPS: Sample{10e9, 12e9, 14e9}},
			{Mode: ModeWireGo, BitsPS: Sample{2e9, 3e9, 4e9}, PeakRSS: 200 << 20},
			{Mode: ModeLanmesh, BitsPS: Sample{3e9, 3.3e9, 3.6e9}, PeakRSS: 20 << 20, Paths: []string{"direct 198.18.2.2:41641"}},
		},
	}
	var b strings.Builder
	if err := WriteThroughputReport(&b, r); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| lanmesh | 3.30 | 3.00-3.60 | 3/3 | 1.10x | 0.28x | 20.00 MiB |",
		"| wireguard-go | 3.00 | 2.00-4.00 | 3/3 | 1.00x | 0.25x | 200.00 MiB |",
		"path after runs: direct 198.18.2.2:41641",
		"| throughput vs stock wireguard-go | >= 1.0x | 1.10x | yes |",
		"| peak RSS per agent during transfer | <= 32.00 MiB | 20.00 MiB | yes |",
		"- kernel: ",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if len(r.Failed()) != 0 {
		t.Errorf("Failed() = %v, want none", r.Failed())
	}

	// A slow, fat, partly failing lanmesh must show up as goals not met.
	r.Modes[2] = ModeResult{Mode: ModeLanmesh, BitsPS: Sample{1e9}, PeakRSS: 40 << 20, Errs: []string{"run 2: boom"}}
	b.Reset()
	if err := WriteThroughputReport(&b, r); err != nil {
		t.Fatal(err)
	}
	md = b.String()
	for _, want := range []string{"| 0.33x | NO |", "| 40.00 MiB | NO |", "ERROR (1 of 3 runs failed): run 2: boom", "FAILED to measure"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if len(r.Failed()) != 1 {
		t.Errorf("Failed() = %v, want one", r.Failed())
	}
}
