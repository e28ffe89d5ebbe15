package bench

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// WriteAbuseReport writes bench/results/abuse.md.
func WriteAbuseReport(w io.Writer, r *AbuseResult) error {
	var b strings.Builder
	o := r.Opts
	verdict := "PASS"
	if f := r.Failed(); len(f) > 0 {
		verdict = "FAIL: " + strings.Join(f, "; ")
	}
	fmt.Fprintf(&b, "Produced by `lanmesh-bench -only abuse` (internal/bench/abuse.go); the same run, shorter, is the test "+
		"`TestAbuseFloodSparesAgents` (internal/e2e). A real `lanmesh-coord serve` with its default limits "+
		"([docs/limits.md](../../docs/limits.md)) listens on 127.0.0.1. While it is attacked, %d real control clients "+
		"(internal/controlclient, what the agent uses) on 127.0.0.1 register with one reusable key, all at once (retrying a 429 after Retry-After, as the agent does), "+
		"once the flood has hit coord's limits; each opens its netmap stream, holds it, reconnects halfway "+
		"(a fresh challenge and signed request) and holds the new stream, %v in all. The attackers have addresses of their own, as on the internet:\n\n", o.Agents, o.Hold)
	fmt.Fprintf(&b, "- 127.0.0.2: %d goroutines ask for challenges (every tenth request the health check) as fast as coord answers, "+
		"and %d post correctly signed registrations of fresh made-up machines with a made-up auth key;\n", o.Flooders, o.Forgers)
	fmt.Fprintf(&b, "- 127.0.0.3: %d connections at a time finish TLS, announce a 60000-byte POST body and send one byte a second, reconnecting when cut;\n", o.Slow)
	fmt.Fprintf(&b, "- 127.0.0.4: %d TCP connections at a time that never send anything;\n", o.Idle)
	fmt.Fprintf(&b, "- 127.0.0.5: %d relay handshakes at a time (TLS, upgrade to the relay protocol at /derp) left hanging where the ClientInfo frame belongs.\n\n"+
		"Meanwhile two more nodes connect to coord's embedded relay and send each other a packet each way once a second.\n\n", o.Stall)
	fmt.Fprintf(&b, "All of it shares the machine's %d CPUs with coord. Verdict: **%s**.\n\n", r.Env.CPUs, verdict)

	b.WriteString("| what | measured |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	row("agents that registered, got a full netmap, reconnected and kept the stream to the end", fmt.Sprintf("%d of %d", r.AgentsOK, o.Agents))
	row("flood's first answer other than 200 (agents start 1 s later)", ms(r.SaturatedAfter))
	row("register under attack (challenge + signed request), median / max", fmt.Sprintf("%s / %s", ms(r.RegisterP50), ms(r.RegisterMax)))
	row("registrations answered 429 and retried after Retry-After, as the agent does (22 new machines on one address; first-registration burst 20)", fmt.Sprint(r.RegisterRetries))
	row("stream open to full netmap, max", ms(r.FullMapMax))
	row("longest silence on a stream (keep-alive every 15 s)", ms(r.MaxGap))
	row("coord peak RSS (VmHWM) / RSS at the end", fmt.Sprintf("%.1f MiB / %.1f MiB (bound %d MiB)", mib(r.CoordHWM), mib(r.CoordRSS), o.RSSBound>>20))
	total := func(m map[int]int64) int64 {
		var n int64
		for _, v := range m {
			n += v
		}
		return n
	}
	row("challenge + health flood: requests answered", fmt.Sprintf("%d in %.0f s (%.0f/s): %s", total(r.Challenges), r.FloodSecs, float64(total(r.Challenges))/r.FloodSecs, codes(r.Challenges)))
	row("forged signed registrations answered", fmt.Sprintf("%d (%.0f/s): %s", total(r.Forged), float64(total(r.Forged))/r.FloodSecs, codes(r.Forged)))
	row("dribbling connections through TLS / closed by coord at accept or in TLS (per-source cap 256)", fmt.Sprintf("%d / %d", r.SlowOpened, r.SlowRefused))
	row("longest a dribbling connection stayed open (body deadline 10 s)", ms(r.SlowHeldMax))
	row("silent connections opened / longest held (header deadline 10 s)", fmt.Sprintf("%d / %s", r.IdleOpened, ms(r.IdleHeldMax)))
	row("relay: hanging handshakes that got a ServerKey / closed at once (share 16 per source)", fmt.Sprintf("%d / %d", r.StallOpened, r.StallShut))
	row("relay: two nodes connected (max) / round trips through it / failures", fmt.Sprintf("%s / %d / %d", ms(r.RelayConnect), r.RelayRounds, len(r.RelayFailures)))
	if len(r.AgentErrs) > 0 {
		fmt.Fprintf(&b, "\nAgent errors:\n\n")
		for _, e := range r.AgentErrs {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	if len(r.Errs) > 0 {
		fmt.Fprintf(&b, "\nErrors:\n\n")
		for _, e := range r.Errs {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	if err := r.Env.WriteHeader(w, "Coord under a flood (S18)"); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// codes renders answers by HTTP status, e.g. "429: 51234, 200: 1200".
func codes(m map[int]int64) string {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	var parts []string
	for _, k := range ks {
		name := "transport error"
		if k != 0 {
			name = fmt.Sprintf("%d %s", k, http.StatusText(k))
		}
		parts = append(parts, fmt.Sprintf("%s: %d", name, m[k]))
	}
	return strings.Join(parts, ", ")
}
