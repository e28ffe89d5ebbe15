package fwbench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// TestBenchmark runs the measurement behind LMFW_BENCH=1 (it needs root
// and takes a few seconds) and checks its goals: the rule count does
// not grow with the mesh, and an update at 1000 peers takes < 50 ms.
func TestBenchmark(t *testing.T) {
	if os.Getenv("LMFW_BENCH") != "1" {
		testenv.Optional(t, "set LMFW_BENCH=1 to run the firewall benchmark")
	}
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "needs root for network namespaces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rows, err := Benchmark(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	WriteMarkdown(&b, rows)
	t.Logf("\n%s", b.String())
	for _, r := range rows {
		if r.NftRules != rows[0].NftRules {
			t.Errorf("%d peers: %d nft rules, %d at %d peers: rule count not flat", r.Peers, r.NftRules, rows[0].NftRules, rows[0].Peers)
		}
		if r.Peers >= 1000 && r.Update > 50*time.Millisecond {
			t.Errorf("%d peers: update %v, goal < 50 ms", r.Peers, r.Update)
		}
	}
}

func TestGenerate(t *testing.T) {
	f, self, err := generate(101)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Inbound) == 0 || len(self.ApprovedRoutes) == 0 {
		t.Fatalf("generated filter is empty: %+v for %+v", f, self)
	}
}
