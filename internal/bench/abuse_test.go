package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseStatusKB(t *testing.T) {
	status := []byte("Name:\tlanmesh-coord\nVmPeak:\t 1000 kB\nVmHWM:\t   43008 kB\nVmRSS:\t   42000 kB\n")
	if got := parseStatusKB(status, "VmHWM:"); got != 43008<<10 {
		t.Fatalf("VmHWM = %d", got)
	}
	if got := parseStatusKB(status, "VmSwap:"); got != 0 {
		t.Fatalf("absent field = %d", got)
	}
}

// The report fails an run where an agent failed, coord grew past the
// bound or the flood never hit a limit.
func TestAbuseFailed(t *testing.T) {
	ok := &AbuseResult{Opts: AbuseOptions{Agents: 2, RSSBound: 100}, AgentsOK: 2, CoordHWM: 50, Challenges: map[int]int64{200: 1, 429: 5}, FloodSecs: 1, RelayRounds: 5}
	if f := ok.Failed(); len(f) != 0 {
		t.Fatalf("good run failed: %v", f)
	}
	for name, mut := range map[string]func(*AbuseResult){
		"agent":  func(r *AbuseResult) { r.AgentsOK = 1; r.AgentErrs = []string{"agent-01: boom"} },
		"rss":    func(r *AbuseResult) { r.CoordHWM = 101 },
		"no 429": func(r *AbuseResult) { r.Challenges = map[int]int64{200: 9} },
		"no rss": func(r *AbuseResult) { r.CoordHWM = 0 },
		"setup":  func(r *AbuseResult) { r.Errs = []string{"no coord"} },
	} {
		r := *ok
		mut(&r)
		if len(r.Failed()) == 0 {
			t.Errorf("%s: bad run passed", name)
		}
		var md bytes.Buffer
		if err := WriteAbuseReport(&md, &r); err != nil || !strings.Contains(md.String(), "FAIL") {
			t.Errorf("%s: report %v does not say FAIL", name, err)
		}
	}
}
