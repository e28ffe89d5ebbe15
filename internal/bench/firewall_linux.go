package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/agent/firewall/fwbench"
)

// GoalFirewallUpdate is the update time the firewall must beat at 1000
// peers (issue 11): coord pushes a filter per policy change, so this is
// on the path of "a policy change takes effect in under 1 s".
const GoalFirewallUpdate = 50 * time.Millisecond

// FirewallResult is one run of agent/firewall/fwbench.
type FirewallResult struct {
	Env  Env
	Rows []fwbench.Row
}

// RunFirewall measures nft rule count and update time for 10, 100 and
// 1000 peers, each in a throwaway network namespace (needs root).
func RunFirewall(ctx context.Context) (*FirewallResult, error) {
	rows, err := fwbench.Benchmark(ctx)
	if err != nil {
		return nil, fmt.Errorf("firewall bench: %w", err)
	}
	return &FirewallResult{Env: CurrentEnv(), Rows: rows}, nil
}

// Failed names the goals the result misses: a rule count that grows with
// the mesh, or an update over GoalFirewallUpdate at 1000 peers or more.
func (r *FirewallResult) Failed() []string {
	var f []string
	if len(r.Rows) == 0 {
		return []string{"no rows measured"}
	}
	for _, row := range r.Rows {
		if row.NftRules != r.Rows[0].NftRules {
			f = append(f, fmt.Sprintf("%d nft rules at %d peers but %d at %d peers: rule count not flat",
				row.NftRules, row.Peers, r.Rows[0].NftRules, r.Rows[0].Peers))
		}
		if row.Peers >= 1000 && row.Update >= GoalFirewallUpdate {
			f = append(f, fmt.Sprintf("update at %d peers took %v (goal < %v)", row.Peers, row.Update, GoalFirewallUpdate))
		}
	}
	return f
}

// WriteFirewallReport writes bench/results/firewall.md.
func WriteFirewallReport(w io.Writer, r *FirewallResult) error {
	var b strings.Builder
	if err := r.Env.WriteHeader(&b, "Firewall: nft rules and update time by mesh size"); err != nil {
		return err
	}
	fmt.Fprintf(&b, "agent/firewall enforcing the packet filter coord compiles from a %d-rule policy\n"+
		"(10 groups of 10 users, 20 tags, a router with a /24 per ten nodes) for the\n"+
		"router with the largest filter. Each size runs in a fresh network namespace;\n"+
		"\"update\" is one atomic nft transaction that swaps the filter sets (21 updates,\n"+
		"median and max); \"nft rules\" is counted in the kernel's `inet lanmesh` table.\n\n", fwbench.PolicyRules)
	if err := fwbench.WriteMarkdown(&b, r.Rows); err != nil {
		return fmt.Errorf("write firewall table: %w", err)
	}
	last := r.Rows[len(r.Rows)-1]
	flat := true
	for _, row := range r.Rows {
		flat = flat && row.NftRules == r.Rows[0].NftRules
	}
	fmt.Fprintf(&b, "\nGoals:\n\n"+
		"- rule count flat as peers and rules grow (sets and maps, not a rule per peer): %s (%d rules at %d peers, %d at %d peers)\n"+
		"- update under %v at %d peers: %s (median %.1f ms, max %.1f ms)\n",
		passFail(flat), r.Rows[0].NftRules, r.Rows[0].Peers, last.NftRules, last.Peers,
		GoalFirewallUpdate, last.Peers, passFail(last.Update < GoalFirewallUpdate), msf(last.Update), msf(last.UpdateMax))
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("write firewall report: %w", err)
	}
	return nil
}
