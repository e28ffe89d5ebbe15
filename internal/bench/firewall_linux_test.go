package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/agent/firewall/fwbench"
)

func TestFirewallGoals(t *testing.T) {
	row := func(peers, rules int, upd time.Duration) fwbench.Row {
		return fwbench.Row{Peers: peers, PolicyRules: 50, NftRules: rules, Update: upd, UpdateMax: upd}
	}
	for _, tt := range []struct {
		name string
		rows []fwbench.Row
		fail string // substring of the failure; "" for none
		md   string
	}{
		{"met", []fwbench.Row{row(10, 26, 5*time.Millisecond), row(1000, 26, 20*time.Millisecond)}, "", "**met** (median 20.0 ms"},
		{"rules grow", []fwbench.Row{row(10, 26, time.Millisecond), row(1000, 900, time.Millisecond)}, "not flat", "**MISSED** (26 rules at 10 peers, 900"},
		{"slow", []fwbench.Row{row(10, 26, time.Millisecond), row(1000, 26, 60*time.Millisecond)}, "goal < 50ms", "**MISSED** (median 60.0 ms"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &FirewallResult{Env: CurrentEnv(), Rows: tt.rows}
			f := strings.Join(r.Failed(), "; ")
			if tt.fail == "" && f != "" || tt.fail != "" && !strings.Contains(f, tt.fail) {
				t.Fatalf("Failed = %q, want %q", f, tt.fail)
			}
			var b bytes.Buffer
			if err := WriteFirewallReport(&b, r); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), tt.md) || !strings.Contains(b.String(), "| 1000 | 50 |") {
				t.Fatalf("firewall.md lacks %q:\n%s", tt.md, b.String())
			}
		})
	}
	if f := (&FirewallResult{}).Failed(); len(f) == 0 {
		t.Fatal("an empty result passed")
	}
}
