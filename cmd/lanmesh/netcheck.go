package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/agent/netcheck"
)

func runNetcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, sock := newFlags("netcheck", "netcheck [--json]", "lanmesh netcheck --json", stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rep, err := localapi.NewClient(*sock).Netcheck(ctx)
	if err != nil {
		return userErr(err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printNetcheck(stdout, rep)
	return nil
}

func printNetcheck(w io.Writer, r *netcheck.Report) {
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	fmt.Fprintf(w, "UDP:        %s\n", yn(r.UDP))
	fmt.Fprintf(w, "IPv4:       %s", yn(r.IPv4))
	for _, a := range r.GlobalV4 {
		fmt.Fprintf(w, " %s", a)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "IPv6:       %s", yn(r.IPv6))
	if r.GlobalV6.IsValid() {
		fmt.Fprintf(w, " %s", r.GlobalV6)
	}
	fmt.Fprintln(w)
	varies := "unknown (fewer than two STUN servers answered)"
	if r.MappingVariesByDest != nil {
		varies = yn(*r.MappingVariesByDest)
		if *r.MappingVariesByDest {
			varies += " (hard NAT: direct paths need a public address or a full-cone NAT on the other side; otherwise traffic stays on the relay)"
		}
	}
	fmt.Fprintf(w, "Mapping varies by destination: %s\n", varies)
	ids := make([]int, 0, len(r.RegionLatency))
	for id := range r.RegionLatency {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	fmt.Fprintln(w, "Relay latencies:")
	if len(ids) == 0 {
		fmt.Fprintln(w, "  none reachable")
	}
	for _, id := range ids {
		how := "stun"
		if _, ok := r.RegionHTTPSLatency[id]; ok {
			how = "https"
		}
		mark := ""
		if id == r.PreferredRegion {
			mark = " (preferred)"
		}
		fmt.Fprintf(w, "  region %d: %s via %s%s\n", id, r.RegionLatency[id].Round(100*time.Microsecond), how, mark)
	}
}
