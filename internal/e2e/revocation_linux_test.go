package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/bench"
	"github.com/lanmesh/lanmesh/internal/testbed"
)

// TestRevocationOnDevices (issue 15, acceptance 2, small): 12 real agents
// (two routers, ten laptops, userspace WireGuard with --wg-uapi) and a
// standalone lanmesh-derp. Two users with two nodes each are deleted one
// after the other (the admin API request `lanmesh-coord users delete`
// sends, on coord's admin socket). For each: every
// remaining node's WireGuard device, read over its UAPI socket (not the
// netmap), drops every key of the user; lanmesh-derp refuses each of
// those keys ("not allowed") after admitting one of them just before the
// delete; every remaining device still holds every other remaining node
// and the relay still admits a remaining node. S11: no node's auth key or
// private key and not the relay token is in any log of the run (coord,
// relay, agents, CLI output; testbed.ScanLogs). The bound is generous
// (10 s) for a loaded CI machine; `lanmesh-bench -only revocation` runs
// 50 nodes and measures p50/p99 (bench/results/revocation.md).
func TestRevocationOnDevices(t *testing.T) {
	testbed.SkipUnlessRoot(t)
	if _, err := testbed.FindBinaries(); err != nil {
		t.Fatalf("binaries: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	res := bench.RunRevocation(ctx, bench.RevocationOptions{Nodes: 12, Runs: 2, NodesPerUser: 2, Deadline: 10 * time.Second})
	for _, f := range res.Failed() {
		t.Error(f)
	}
	if t.Failed() {
		t.Logf("logs in %s", res.LogDir)
		return
	}
	for i, run := range res.Runs {
		if run.Deleted != 2 || len(run.PeerDrops) != run.Observers || run.Observers != 12-2*(i+1) || len(run.RelayRefused) != run.Deleted {
			t.Errorf("run %d: %d deleted, %d of %d devices dropped them, relay refused %d keys", i+1, run.Deleted, len(run.PeerDrops), run.Observers, len(run.RelayRefused))
		}
		t.Logf("S15: user %s (%d nodes) gone from all %d peers' WireGuard devices after %s, refused by lanmesh-derp after %s (coord answered the delete after %s)",
			run.User, run.Deleted, run.Observers, fmtMs(run.LastPeer), fmtMs(run.RelayLast), fmtMs(run.Command))
		fmt.Printf("S15 revocation on devices (delete request -> last peer's WireGuard device dropped the user): %d ms\n", run.LastPeer.Milliseconds())
	}
	if res.SecretsScanned < 2*12+1 {
		t.Errorf("S11: only %d secrets looked for in the run's logs, want every node's auth key and private key and the relay token", res.SecretsScanned)
	}
	t.Logf("agents' peak RSS %d MiB max, %d MiB summed over %d agents", res.AgentHWMMax>>20, res.AgentHWMSum>>20, res.AgentsMeasure)
}
