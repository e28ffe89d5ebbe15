package policy_test

import (
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/policy"
	"github.com/lanmesh/lanmesh/coord/policy/policytest"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

func scalePolicy(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("scale.hujson", []byte(policytest.ScalePolicy()))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func BenchmarkCompile10k(b *testing.B) {
	p, nodes := scalePolicy(b), policytest.ScaleNodes(10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policy.Compile(p, nodes); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCompileScale: 10,000 nodes and 50 rules compile in under a second.
func TestCompileScale(t *testing.T) {
	if testing.Short() || raceEnabled {
		testenv.Optional(t, "timing test, not under -short or -race; see BenchmarkCompile10k")
	}
	p, nodes := scalePolicy(t), policytest.ScaleNodes(10000)
	// Best of three: the machine is shared, and one slow run is noise.
	var c *policy.Compiled
	d := time.Hour
	for range 3 {
		start := time.Now()
		var err error
		if c, err = policy.Compile(p, nodes); err != nil {
			t.Fatal(err)
		}
		d = min(d, time.Since(start))
	}
	if d > time.Second {
		t.Errorf("compiling 10,000 nodes took %v", d)
	} else {
		t.Logf("compiled 10,000 nodes in %v", d)
	}
	r, _ := c.Node(2)
	if len(r.Peers()) == 0 || len(r.Filter.Inbound) == 0 {
		t.Errorf("node 2 got nothing: %d peers, %d rules", len(r.Peers()), len(r.Filter.Inbound))
	}
}
