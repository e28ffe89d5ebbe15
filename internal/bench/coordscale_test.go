package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/loadtest"
)

// A small real load test in this process: coord, streams and a policy
// change, rendered as coord-scale.md.
func TestRunCoordScaleSmall(t *testing.T) {
	r := RunCoordScale(context.Background(), CoordScaleOptions{Sizes: []int{50}, Timeout: time.Minute})
	if len(r.Rows) != 1 || r.Rows[0].Err != "" {
		t.Fatalf("rows: %+v", r.Rows)
	}
	if got := r.Rows[0].Result; got.Affected != 50 || got.Latency <= 0 || got.MaxRSS == 0 {
		t.Fatalf("result: %v", got)
	}
	if f := r.Failed(); len(f) > 0 {
		t.Fatalf("failed: %v", f)
	}
	var b bytes.Buffer
	if err := WriteCoordScaleReport(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| 50 | 50/50 |", "**met**", "All sizes ran in one process", "Headscale"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("coord-scale.md lacks %q:\n%s", want, b.String())
		}
	}
}

func TestCoordScaleFailed(t *testing.T) {
	for _, tt := range []struct {
		name string
		row  CoordScaleRow
		want string
	}{
		{"ok", CoordScaleRow{Result: loadtest.Result{Nodes: 1000, Affected: 1000, Latency: 900 * time.Millisecond}}, ""},
		{"slow 1000", CoordScaleRow{Result: loadtest.Result{Nodes: 1000, Affected: 1000, Latency: 1200 * time.Millisecond}}, "goal < 1s"},
		{"ok 10000", CoordScaleRow{Result: loadtest.Result{Nodes: 10000, Affected: 10000, Latency: 4 * time.Second}}, ""},
		{"slow 10000", CoordScaleRow{Result: loadtest.Result{Nodes: 10000, Affected: 10000, Latency: 6 * time.Second}}, "goal < 5s"},
		{"missing deltas", CoordScaleRow{Result: loadtest.Result{Nodes: 1000, Affected: 999}}, "only 999"},
		{"error", CoordScaleRow{Result: loadtest.Result{Nodes: 1000}, Err: "boom"}, "boom"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := strings.Join((&CoordScaleResult{Rows: []CoordScaleRow{tt.row}}).Failed(), "; ")
			if tt.want == "" && f != "" || tt.want != "" && !strings.Contains(f, tt.want) {
				t.Fatalf("Failed = %q, want %q", f, tt.want)
			}
		})
	}
}

func TestRunChildRoles(t *testing.T) {
	t.Setenv(ChildEnv, "")
	if child, err := RunChild(context.Background()); child || err != nil {
		t.Fatalf("no role: child=%v err=%v", child, err)
	}
	for _, tt := range []struct{ role, nodes, want string }{
		{"bogus", "", "unknown role"},
		{"coordscale", "", "positive node count"},
		{"coordscale", "-3", "positive node count"},
	} {
		t.Setenv(ChildEnv, tt.role)
		t.Setenv(childNodesEnv, tt.nodes)
		child, err := RunChild(context.Background())
		if !child || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("role %q nodes %q: child=%v err=%v, want %q", tt.role, tt.nodes, child, err, tt.want)
		}
	}
}
