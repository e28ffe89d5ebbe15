package fwbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"

	"github.com/lanmesh/lanmesh/agent/firewall"
	"github.com/lanmesh/lanmesh/coord/policy"
	"github.com/lanmesh/lanmesh/coord/policy/policytest"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// PolicyRules is the size of the generated policy.
const PolicyRules = policytest.ScaleRules

// Sizes are the mesh sizes Benchmark measures.
var Sizes = []int{10, 100, 1000}

// Row is one measurement.
type Row struct {
	Peers       int           // nodes in the mesh besides the measured one
	PolicyRules int           // ACL entries in the policy
	FilterRules int           // wire.FilterRules coord sent the node
	Elements    int           // set elements in the kernel
	NftRules    int           // nft rules in table inet lanmesh, from the kernel
	Build       time.Duration // first Set: table, chains, sets
	Update      time.Duration // median Set with a changed filter
	UpdateMax   time.Duration
}

// Benchmark measures each size in a fresh network namespace of its own
// (needs root), deleted afterwards.
func Benchmark(ctx context.Context) ([]Row, error) {
	var rows []Row
	for _, n := range Sizes {
		if err := ctx.Err(); err != nil {
			return rows, err
		}
		r, err := measure(ctx, n)
		if err != nil {
			return rows, fmt.Errorf("fwbench: %d peers: %w", n, err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// WriteMarkdown writes rows as the table in bench/results/firewall.md.
func WriteMarkdown(w io.Writer, rows []Row) error {
	var b strings.Builder
	b.WriteString("| peers | policy rules | filter rules | set elements | nft rules | first build | update (median) | update (max) |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %.1f ms | %.1f ms | %.1f ms |\n", r.Peers, r.PolicyRules, r.FilterRules,
			r.Elements, r.NftRules, ms(r.Build), ms(r.Update), ms(r.UpdateMax))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func measure(ctx context.Context, n int) (Row, error) {
	row := Row{Peers: n, PolicyRules: PolicyRules}
	filter, self, err := generate(n + 1)
	if err != nil {
		return row, err
	}
	row.FilterRules = len(filter.Inbound) + len(filter.Forward)
	// A changed filter for updates: one more rule, so every update
	// really replaces set contents.
	changed := *filter
	changed.Inbound = append(slices.Clone(filter.Inbound), wire.FilterRule{
		Src: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10")}, Dst: self.Addresses,
		Protos: []uint8{wire.ProtoTCP}, Ports: []wire.PortRange{{First: 9999, Last: 9999}}})
	cfg := firewall.Config{MeshIface: "lanmesh0", SNAT: true, Filter: filter,
		Addresses: self.Addresses, AdvertisedRoutes: self.ApprovedRoutes}

	err = inTempNS(func() error {
		fw := firewall.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer fw.Close()
		start := time.Now()
		if err := fw.Set(cfg); err != nil {
			return err
		}
		row.Build = time.Since(start)
		var times []time.Duration
		for i := range 21 {
			if err := ctx.Err(); err != nil {
				return err
			}
			c := cfg
			if i%2 == 0 {
				c.Filter = &changed
			}
			start := time.Now()
			if err := fw.Set(c); err != nil {
				return err
			}
			times = append(times, time.Since(start))
		}
		slices.Sort(times)
		row.Update, row.UpdateMax = times[len(times)/2], times[len(times)-1]
		row.NftRules, row.Elements, err = fw.Stats()
		return err
	})
	return row, err
}

// inTempNS runs f on a thread inside a new network namespace, deleted
// afterwards: the benchmark never touches the host's ruleset.
func inTempNS(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := func() error {
			orig, err := netns.Get()
			if err != nil {
				return err
			}
			defer orig.Close()
			name := fmt.Sprintf("lmfwb-%d-%d", os.Getpid(), nsSeq.Add(1))
			h, err := netns.NewNamed(name) // also switches this thread
			if err != nil {
				return fmt.Errorf("create netns %s: %w", name, err)
			}
			defer netns.DeleteNamed(name)
			defer h.Close()
			err = f()
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread() // else the thread dies with the goroutine
			}
			return err
		}()
		errc <- err
	}()
	return <-errc
}

var nsSeq atomic.Int32

// generate compiles a 50-rule policy (groups, tags, routed LANs, as in
// coord/policy's scale benchmark) for nodes mesh nodes, and returns the
// filter of the router with the biggest one.
func generate(nodes int) (*wire.PacketFilter, policy.Node, error) {
	p, err := policy.Parse("bench.hujson", []byte(policytest.ScalePolicy()))
	if err != nil {
		return nil, policy.Node{}, err
	}
	ns := policytest.ScaleNodes(nodes)
	c, err := policy.Compile(p, ns)
	if err != nil {
		return nil, policy.Node{}, err
	}
	var best *wire.PacketFilter
	var self policy.Node
	for _, nd := range ns {
		if len(nd.ApprovedRoutes) == 0 {
			continue
		}
		r, ok := c.Node(nd.ID)
		if !ok {
			continue
		}
		f := r.Filter
		if best == nil || len(f.Inbound)+len(f.Forward) > len(best.Inbound)+len(best.Forward) {
			best, self = &f, nd
		}
	}
	if best == nil {
		return nil, self, fmt.Errorf("no router in the generated mesh")
	}
	return best, self, nil
}
