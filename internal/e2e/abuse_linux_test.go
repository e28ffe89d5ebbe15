package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/bench"
	"github.com/lanmesh/lanmesh/internal/testbed"
)

// TestAbuseFloodSparesAgents is issue 14's acceptance 1 (S18): a real
// lanmesh-coord on loopback, with its default limits, is flooded with
// anonymous challenges, health checks and forged signed registrations
// as fast as one client can send them, while another holds hundreds of
// connections that dribble bodies, others say nothing and others leave
// relay handshakes hanging. 20 real control clients (the agent's
// internal/controlclient, retrying a 429 after Retry-After as the agent
// does) register at once and hold their netmap streams through it, with
// a reconnect halfway, and two more nodes relay packets through coord's
// embedded relay every second: none may fail, and coord's peak RSS
// (VmHWM) stays under 128 MiB. Against coord's old nonce table every
// agent failed with 503. bench/results/abuse.md records
// the numbers of the longer `lanmesh-bench -only abuse` run.
func TestAbuseFloodSparesAgents(t *testing.T) {
	bins, err := testbed.FindBinaries()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res := bench.RunAbuse(ctx, bench.AbuseOptions{
		Coord: bins.Coord, Agents: 20, Hold: 20 * time.Second,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	var md bytes.Buffer
	bench.WriteAbuseReport(&md, res)
	t.Log("\n" + md.String())
	for _, f := range res.Failed() {
		t.Error(f)
	}
}
