package bench

import (
	"context"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// TestThroughputPlain runs the real harness on the standard topology with
// the plain-routing data plane only (the tunnels need the built binaries
// and a minute; `make bench` runs those).
func TestThroughputPlain(t *testing.T) {
	testbed.SkipUnlessRoot(t)
	if testing.Short() {
		testenv.Optional(t, "builds a namespace world; not under -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := RunThroughput(ctx, ThroughputOptions{Reps: 2, Duration: time.Second, Modes: []string{ModePlain}})
	if err != nil {
		t.Fatal(err)
	}
	if f := res.Failed(); len(f) > 0 {
		t.Fatalf("failed: %v", f)
	}
	m := res.mode(ModePlain)
	if m == nil || len(m.BitsPS) != 2 {
		t.Fatalf("plain routing: %+v, want 2 runs", m)
	}
	// Two namespaces hops of veth forward far more than 100 Mbit/s; less
	// means the bytes did not flow the way the harness thinks.
	if m.BitsPS.Min() < 100e6 {
		t.Errorf("plain routing %v bit/s: implausibly slow", m.BitsPS)
	}
}

func TestRunThroughputBadOptions(t *testing.T) {
	for _, o := range []ThroughputOptions{
		{Reps: 0, Duration: time.Second},
		{Reps: 1, Duration: 0},
		{Reps: 1, Duration: time.Second, Modes: []string{"carrier pigeon"}},
	} {
		if _, err := RunThroughput(context.Background(), o); err == nil {
			t.Errorf("RunThroughput(%+v) succeeded", o)
		}
	}
}
