package bench

import (
	"strings"
	"testing"
	"time"
)

func TestParseProcStatCPU(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     uint64
		err      string
	}{
		{"plain", "1234 (lanmesh-coord) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 100 0 0", 325, ""},
		{"spaces and parens in name", "7 (a) b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0", 7, ""},
		{"no paren", "1234 lanmesh S 1", 0, "no ')'"},
		{"short", "1 (x) S 1 2 3", 0, "fields"},
		{"bad utime", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 zz 4", 0, "utime"},
		{"empty", "", 0, "no ')'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseProcStatCPU([]byte(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %d, %v; want %d", got, err, c.want)
			}
		})
	}
}

func FuzzParseProcStatCPU(f *testing.F) {
	f.Add([]byte("1234 (lanmesh-coord) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseProcStatCPU(b) })
}

func TestRelaySection(t *testing.T) {
	r := &ThroughputResult{
		Env: CurrentEnv(), Reps: 2, Duration: time.Second, Setup: "test",
		Modes: []ModeResult{{Mode: ModeLanmesh, BitsPS: Sample{2e9, 2e9}}},
		Relay: &RelayResult{BitsPS: Sample{1e9, 1e9}, CPUPerG: Sample{0.5, 0.7}, Paths: []string{"relay coord"}, Note: "n"},
	}
	var b strings.Builder
	if err := WriteThroughputReport(&b, r); err != nil {
		t.Fatal(err)
	}
	want := "| lanmesh relayed | 1.00 | 1.00-1.00 | 2/2 | 0.50x | 0.60 | 0.50-0.70 | path after runs: relay coord |"
	if !strings.Contains(b.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}
}
