package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/policy"
)

var nodesExpiryCmd = &command{
	name:    "nodes expiry",
	args:    "ID|NAME (--in DURATION | --at TIME | --off)",
	summary: "set when a node's key expires: at that instant peers and relays drop it and the node must log in again (or use an auth key); --off: never",
	examples: []string{
		"lanmesh-coord nodes expiry laptop-ann --in 720h",
		"lanmesh-coord nodes expiry laptop-ann --in 10s",
		"lanmesh-coord nodes expiry laptop-ann --at 2027-01-31T18:00:00Z",
		"lanmesh-coord nodes expiry nas --off",
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		in := fs.String("in", "", "expire this long from now (Go duration: 10s, 12h, 720h)")
		at := fs.String("at", "", "expire at this time (RFC 3339, e.g. 2027-01-31T18:00:00Z)")
		off := fs.Bool("off", false, "the key never expires (as for tagged devices)")
		asJSON := fs.Bool("json", false, "print the node as JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 1 {
				return usageError{"want exactly one node ID or name"}
			}
			req := adminapi.ExpiryRequest{In: *in, Off: *off}
			if *at != "" {
				t, err := time.Parse(time.RFC3339, *at)
				if err != nil {
					return usageError{fmt.Sprintf("--at %q: want an RFC 3339 time such as 2027-01-31T18:00:00Z", *at)}
				}
				req.At = t
			}
			var n adminapi.Node
			if err := admin(g).Do(ctx, "POST", adminapi.NodeExpiryPath(args[0]), req, &n); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, n)
			}
			if n.KeyExpiryOffByPolicy {
				_, err := fmt.Fprintf(g.stdout, "the key of node %d (%s) never expires while the policy's nodeAttrs give it %s; without them it expires at %s\n",
					n.ID, n.Name, policy.AttrDisableKeyExpiry, when(n.KeyExpiry))
				return err
			}
			if n.KeyExpiry.IsZero() {
				_, err := fmt.Fprintf(g.stdout, "the key of node %d (%s) never expires\n", n.ID, n.Name)
				return err
			}
			_, err := fmt.Fprintf(g.stdout, "the key of node %d (%s) expires at %s\n", n.ID, n.Name, n.KeyExpiry.Local().Format(time.RFC3339))
			return err
		}
	},
}
