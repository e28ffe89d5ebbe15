package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/lanmesh/lanmesh/coord/adminapi"
)

var nodesTagCmd = &command{
	name:    "nodes tag",
	args:    "ID|NAME TAG[,TAG...]",
	summary: "replace a node's tags: it then counts as its tags in policies, not as its user's device, and its key stops expiring; each tag must be in the policy's tagOwners (when a policy is set)",
	examples: []string{
		"lanmesh-coord nodes tag nas tag:server",
		"lanmesh-coord nodes tag 7 tag:router,tag:home --json",
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print the node as JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) < 2 {
				return usageError{"want a node (ID or name) and at least one tag (tag:name)"}
			}
			var tags []string
			for _, a := range args[1:] {
				for _, t := range strings.Split(a, ",") {
					if t = strings.TrimSpace(t); t != "" {
						tags = append(tags, t)
					}
				}
			}
			var n adminapi.Node
			if err := admin(g).Do(ctx, "POST", adminapi.NodeTagsPath(args[0]), adminapi.TagsRequest{Tags: tags}, &n); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, n)
			}
			_, err := fmt.Fprintf(g.stdout, "node %s now has tags %s (key expiry off)\n", n.Name, strings.Join(n.Tags, ","))
			return err
		}
	},
}
