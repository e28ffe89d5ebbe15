package bench

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"
)

// The revocation benchmark (issue 15, acceptance 2): a namespace testbed
// with Nodes real lanmesh agents (two routers and laptops, each in its own
// namespace, userspace WireGuard, a standalone lanmesh-derp as their
// relay, an all-accept policy). Each run deletes one user who owns
// NodesPerUser of them (the admin API request `lanmesh-coord users
// delete` sends) and measures, from the moment the request is sent:
//
//   - per remaining node, when its WireGuard device (read over the UAPI
//     socket, not the netmap) no longer holds any of the
//     user's node keys; the run's number is the last of them;
//   - per deleted node, when lanmesh-derp refuses a connection with its
//     node key.
//
// It also checks that nothing else moved: every remaining device still
// has every other remaining node, and the relay still admits a remaining
// node's key.

// RevocationOptions configure RunRevocation.
type RevocationOptions struct {
	BinDir       string        // host builds of lanmesh, lanmesh-coord, lanmesh-derp ("" builds them)
	Nodes        int           // agents in all, two of them routers; default 50
	Runs         int           // users deleted, one per run; default 5
	NodesPerUser int           // nodes each deleted user owns; default 3
	Deadline     time.Duration // a run fails when a peer still holds a deleted key this long after the command; default 10 s
	Poll         time.Duration // how often each device and the relay are polled; default 10 ms
	// KeepLogs keeps the testbed's logs even when the run passed.
	KeepLogs bool
	Log      *slog.Logger
}

func (o *RevocationOptions) defaults() {
	if o.Nodes <= 0 {
		o.Nodes = 50
	}
	if o.Runs <= 0 {
		o.Runs = 5
	}
	if o.NodesPerUser <= 0 {
		o.NodesPerUser = 3
	}
	if o.Deadline <= 0 {
		o.Deadline = 10 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 10 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// RevocationRun is one deleted user.
type RevocationRun struct {
	User      string
	Deleted   int // the user's nodes
	Observers int // remaining nodes whose devices were watched
	// Command is how long coord took to answer the delete request.
	Command time.Duration
	// LastPeer is when the last remaining device had dropped every one of
	// the user's keys; PeerDrops has one entry per remaining device.
	LastPeer  time.Duration
	PeerDrops []time.Duration
	// RelayRefused is when lanmesh-derp first refused each deleted key;
	// RelayLast the last of them.
	RelayRefused []time.Duration
	RelayLast    time.Duration
	Errs         []string
}

// RevocationResult is what RunRevocation measured.
type RevocationResult struct {
	Env  Env
	Opts RevocationOptions
	Load string // /proc/loadavg before the runs

	Setup     time.Duration // world, coord, relay and every agent joined
	Converged time.Duration // from the last join until every device held every other node
	Runs      []RevocationRun

	// Resources at the end of the runs, from /proc.
	AgentHWMMax   uint64 // largest VmHWM of one agent
	AgentHWMSum   uint64 // sum of the agents' VmHWM (an upper bound of their joint peak)
	AgentRSSSum   uint64 // sum of VmRSS at the end
	AgentCPU      time.Duration
	CoordHWM      uint64
	DerpHWM       uint64
	AgentsMeasure int // agents whose /proc was read
	Wall          time.Duration
	LogDir        string // kept logs, when any
	// SecretsScanned is how many secrets (auth keys, node private keys,
	// the relay token) the S11 check looked for in every log of the run.
	SecretsScanned int

	Errs []string
}

// LastPeerSample is each run's time until the last peer dropped the
// user, in seconds.
func (r *RevocationResult) LastPeerSample() Sample {
	var s Sample
	for _, run := range r.Runs {
		if len(run.Errs) == 0 {
			s = append(s, run.LastPeer.Seconds())
		}
	}
	return s
}

// PeerSample is every device's drop time over all runs, in seconds.
func (r *RevocationResult) PeerSample() Sample {
	var s Sample
	for _, run := range r.Runs {
		for _, d := range run.PeerDrops {
			s = append(s, d.Seconds())
		}
	}
	return s
}

// RelaySample is every deleted key's relay refusal time, in seconds.
func (r *RevocationResult) RelaySample() Sample {
	var s Sample
	for _, run := range r.Runs {
		for _, d := range run.RelayRefused {
			s = append(s, d.Seconds())
		}
	}
	return s
}

// Failed lists what broke the property.
func (r *RevocationResult) Failed() []string {
	f := slices.Clone(r.Errs)
	for _, run := range r.Runs {
		for _, e := range run.Errs {
			f = append(f, fmt.Sprintf("run %s: %s", run.User, e))
		}
	}
	if len(r.Runs) < r.Opts.Runs && len(r.Errs) == 0 {
		f = append(f, fmt.Sprintf("only %d of %d runs", len(r.Runs), r.Opts.Runs))
	}
	return f
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of s; 0
// for an empty sample. With fewer than 100 values p99 is the maximum.
func (s Sample) Percentile(p float64) float64 {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	i := int(math.Ceil(p/100*float64(len(c)))) - 1
	return c[min(max(i, 0), len(c)-1)]
}

func secMs(s float64) string { return fmt.Sprintf("%.0f ms", s*1000) }

// WriteRevocationReport writes bench/results/revocation.md.
func WriteRevocationReport(w io.Writer, r *RevocationResult) error {
	var b strings.Builder
	o := r.Opts
	verdict := "PASS"
	if f := r.Failed(); len(f) > 0 {
		verdict = "FAIL: " + strings.Join(f, "; ")
	}
	last := r.LastPeerSample()
	goal := "met"
	if len(last) == 0 || last.Percentile(99) >= 1 {
		goal = "NOT met"
	}
	fmt.Fprintf(&b, "# Revocation: deleting a user, measured on the devices\n\n"+
		"Produced by `lanmesh-bench -only revocation` (internal/bench/revocation_linux.go); the same run with fewer nodes and a generous bound "+
		"is the test `TestRevocationOnDevices` (internal/e2e).\n\n"+
		"A namespace testbed with %d real `lanmesh agent` processes (two routers behind NAT, %d laptops on the simulated internet, each a /32 routed through its gateway; "+
		"each in its own network namespace with userspace WireGuard, `--wg-uapi`), a real `lanmesh-coord serve` and a standalone "+
		"`lanmesh-derp` that coord's DERP map names as every node's relay (it follows coord's key stream, /v1/derp/watch). "+
		"The policy lets every node reach every other, so every device holds %d peers. "+
		"Each run deletes one user owning %d nodes with the admin API request `lanmesh-coord users delete` sends (DELETE /admin/v1/users/NAME on coord's admin socket; "+
		"the CLI's own start-up is left out) and measures, from the moment the request is sent:\n\n"+
		"- **last peer**: when the last remaining node's WireGuard device, read over its UAPI socket (`get=1`) every %v (the device itself, not the netmap), "+
		"no longer held any of the user's node keys;\n"+
		"- **relay**: when lanmesh-derp first refused a connection made with each deleted node's key (tried every %v).\n\n"+
		"Afterwards every remaining device must still hold every other remaining node, and the relay must still admit a remaining node's key.\n\n",
		o.Nodes, o.Nodes-2, o.Nodes-1, o.NodesPerUser, o.Poll, o.Poll*2)
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, load before the runs %s. Verdict: **%s**. Goal (last peer under 1 s at p99): **%s**.\n\n",
		r.Env.Kernel, r.Env.CPUs, r.Load, verdict, goal)

	peers, relay := r.PeerSample(), r.RelaySample()
	b.WriteString("| over all runs | runs / samples | p50 | p99 | max |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| time until the last peer dropped the user (one per run) | %d | %s | %s | %s |\n", len(last), secMs(last.Percentile(50)), secMs(last.Percentile(99)), secMs(last.Max()))
	fmt.Fprintf(&b, "| time until a peer dropped the user (one per remaining device and run) | %d | %s | %s | %s |\n", len(peers), secMs(peers.Percentile(50)), secMs(peers.Percentile(99)), secMs(peers.Max()))
	fmt.Fprintf(&b, "| time until lanmesh-derp refused a deleted key (one per deleted node) | %d | %s | %s | %s |\n\n", len(relay), secMs(relay.Percentile(50)), secMs(relay.Percentile(99)), secMs(relay.Max()))

	b.WriteString("| run | user's nodes | devices watched | delete request answered | last peer dropped them | relay refused the last key | errors |\n|---|---|---|---|---|---|---|\n")
	for i, run := range r.Runs {
		fmt.Fprintf(&b, "| %d (%s) | %d | %d | %s | %s | %s | %s |\n", i+1, run.User, run.Deleted, run.Observers, ms(run.Command), ms(run.LastPeer), ms(run.RelayLast), strings.Join(run.Errs, "; "))
	}
	mb := func(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	fmt.Fprintf(&b, "\nResources (from /proc at the end of the runs): setup of the whole testbed %s, every device complete %s after the last join; "+
		"one agent's peak RSS (VmHWM) at most %s; the %d agents' VmHWM summed %s (RSS at the end summed %s); "+
		"agents' CPU time in all %s over %s of wall time; coord peak RSS %s; lanmesh-derp peak RSS %s.\n",
		ms(r.Setup), ms(r.Converged), mb(r.AgentHWMMax), r.AgentsMeasure, mb(r.AgentHWMSum), mb(r.AgentRSSSum),
		r.AgentCPU.Round(100*time.Millisecond), r.Wall.Round(time.Second), mb(r.CoordHWM), mb(r.DerpHWM))
	if r.SecretsScanned > 0 {
		fmt.Fprintf(&b, "\nS11: %d secrets (every node's auth key and node private key, the relay's token) were looked for in every log of the run "+
			"(coord, lanmesh-derp, every agent, every CLI command's output); a find fails the run.\n", r.SecretsScanned)
	}
	if len(r.Errs) > 0 {
		fmt.Fprintf(&b, "\nSetup errors: %s\n", strings.Join(r.Errs, "; "))
	}
	if r.LogDir != "" {
		fmt.Fprintf(&b, "\nLogs kept in %s.\n", r.LogDir)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
