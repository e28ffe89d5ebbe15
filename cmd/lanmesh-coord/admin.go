package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/internal/tlscert"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// listFlag collects repeatable, comma-separated values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04")
}

var keysCreateCmd = &command{
	name:    "keys create",
	summary: "create a pre-auth key for joining nodes (printed once; coord keeps only its hash)",
	examples: []string{
		"lanmesh-coord keys create",
		"lanmesh-coord keys create --user alice",
		"lanmesh-coord keys create --user alice --reusable --tag tag:router --expiry 24h",
		"lanmesh-coord keys create --user ci --reusable --ephemeral   # CI runners: deleted soon after they disconnect",
		"lanmesh up --login-server https://coord.example.net --auth-key \"$(lanmesh-coord keys create)\"",
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		reusable := fs.Bool("reusable", false, "the key may join many nodes (default: single use)")
		var tags listFlag
		fs.Var(&tags, "tag", "tag for nodes joining with this key, tag:name (repeatable or comma-separated); tagged nodes' keys do not expire; with a policy set, --user must own each tag in its tagOwners")
		ephemeral := fs.Bool("ephemeral", false, "nodes joining with this key are deleted once disconnected for coord's --ephemeral-inactivity-timeout (default 2m)")
		expiry := fs.Duration("expiry", time.Hour, "how long the key can be used")
		user := fs.String("user", "", "user who owns the nodes joining with this key (default: the built-in user admin); tagged nodes count as their tags in policies")
		asJSON := fs.Bool("json", false, "print JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 0 {
				return usageError{"keys create takes no arguments"}
			}
			var k adminapi.Key
			if err := admin(g).Do(ctx, "POST", adminapi.PathKeys, adminapi.CreateKeyRequest{Reusable: *reusable, Tags: tags, Expiry: expiry.String(), User: *user, Ephemeral: *ephemeral}, &k); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, k)
			}
			_, err := fmt.Fprintln(g.stdout, k.Key)
			return err
		}
	},
}

var keysListCmd = &command{
	name:     "keys list",
	summary:  "list pre-auth keys (ids and flags, never secrets)",
	examples: []string{"lanmesh-coord keys list", "lanmesh-coord keys list --json"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			var keys []adminapi.Key
			if err := admin(g).Do(ctx, "GET", adminapi.PathKeys, nil, &keys); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, keys)
			}
			var rows [][]string
			for _, k := range keys {
				rows = append(rows, []string{k.ID, k.User, fmt.Sprint(k.Reusable), fmt.Sprint(k.Ephemeral), fmt.Sprint(k.Used), keyState(k), orDash(strings.Join(k.Tags, ",")), when(k.Expiry), when(k.Created)})
			}
			return table(g.stdout, "ID\tUSER\tREUSABLE\tEPHEMERAL\tUSED\tSTATE\tTAGS\tEXPIRES\tCREATED", rows)
		}
	},
}

var nodesListCmd = &command{
	name:     "nodes list",
	summary:  "list nodes with their mesh addresses and state",
	examples: []string{"lanmesh-coord nodes list", "lanmesh-coord nodes list --json"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			var nodes []adminapi.Node
			if err := admin(g).Do(ctx, "GET", adminapi.PathNodes, nil, &nodes); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, nodes)
			}
			var rows [][]string
			for _, n := range nodes {
				state := "offline"
				switch {
				case n.Expired:
					state = "expired"
				case n.Online:
					state = "online"
				}
				if n.Ephemeral {
					state += " (ephemeral)"
				}
				expires := when(n.KeyExpiry)
				if n.KeyExpiryOffByPolicy {
					expires = "off (policy)"
				}
				rows = append(rows, []string{fmt.Sprint(n.ID), n.Name, n.IPv4.String(), n.IPv6.String(), state,
					orDash(n.User), orDash(strings.Join(n.Tags, ",")), expires, when(n.LastSeen)})
			}
			return table(g.stdout, "ID\tNAME\tIPV4\tIPV6\tSTATE\tUSER\tTAGS\tKEY EXPIRES\tLAST SEEN", rows)
		}
	},
}

var nodesDeleteCmd = &command{
	name:     "nodes delete",
	args:     "ID|NAME",
	summary:  "delete a node: it disappears from every netmap at once and its stream is closed",
	examples: []string{"lanmesh-coord nodes delete 3", "lanmesh-coord nodes delete router-b"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 1 {
				return usageError{"want exactly one node ID or name"}
			}
			var out struct {
				ID   int64  `json:"deleted"`
				Name string `json:"name"`
			}
			if err := admin(g).Do(ctx, "DELETE", adminapi.NodePath(args[0]), nil, &out); err != nil {
				return err
			}
			_, err := fmt.Fprintf(g.stdout, "deleted node %d (%s)\n", out.ID, out.Name)
			return err
		}
	},
}

var routesListCmd = &command{
	name:     "routes list",
	summary:  "list advertised subnet routes and whether they are approved (by an admin or the policy's autoApprovers)",
	examples: []string{"lanmesh-coord routes list", "lanmesh-coord routes list --json"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			var routes []adminapi.Route
			if err := admin(g).Do(ctx, "GET", adminapi.PathRoutes, nil, &routes); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, routes)
			}
			var rows [][]string
			for _, r := range routes {
				approved := fmt.Sprint(r.Approved)
				if r.AutoApproved {
					approved = "true (autoApprovers)"
				}
				rows = append(rows, []string{fmt.Sprint(r.NodeID), r.Node, r.Prefix.String(), approved})
			}
			return table(g.stdout, "NODE ID\tNODE\tROUTE\tAPPROVED", rows)
		}
	},
}

var routesApproveCmd = &command{
	name:     "routes approve",
	args:     "NODE CIDR[,CIDR...]",
	summary:  "approve subnet routes a node advertises; peers then route them to it",
	examples: []string{"lanmesh-coord routes approve router-a 198.19.1.0/24", "lanmesh-coord routes approve 2 198.19.1.0/24,2001:db8:1::/64"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 2 {
				return usageError{"want NODE and CIDR[,CIDR...]"}
			}
			var routes listFlag
			routes.Set(args[1])
			var out struct {
				Node     string   `json:"node"`
				Approved []string `json:"approved_routes"`
			}
			if err := admin(g).Do(ctx, "POST", adminapi.PathRoutesApprove, adminapi.ApproveRequest{Node: args[0], Routes: routes}, &out); err != nil {
				return err
			}
			_, err := fmt.Fprintf(g.stdout, "%s: approved routes %s\n", out.Node, strings.Join(out.Approved, ", "))
			return err
		}
	},
}

var fingerprintCmd = &command{
	name:     "fingerprint",
	summary:  "print the pin of coord's TLS certificate (for lanmesh up --coord-fingerprint)",
	examples: []string{"lanmesh-coord fingerprint", "lanmesh-coord --state-dir /tmp/coord fingerprint"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		return func(ctx context.Context, g *globals, args []string) error {
			var fp adminapi.Fingerprint
			err := admin(g).Do(ctx, "GET", adminapi.PathFingerprint, nil, &fp)
			if err != nil {
				// Not running: the self-signed certificate in the state
				// dir is the one it will serve.
				b, ferr := os.ReadFile(filepath.Join(g.stateDir, tlscert.CertFile))
				if ferr != nil {
					return fmt.Errorf("%v; and no certificate in %s: %v", err, g.stateDir, ferr)
				}
				blk, _ := pem.Decode(b)
				if blk == nil {
					return fmt.Errorf("%s: no PEM certificate", tlscert.CertFile)
				}
				if _, perr := x509.ParseCertificate(blk.Bytes); perr != nil {
					return fmt.Errorf("%s: %w", tlscert.CertFile, perr)
				}
				fp.Fingerprint = wire.Fingerprint(blk.Bytes)
			}
			_, err = fmt.Fprintln(g.stdout, fp.Fingerprint)
			return err
		}
	},
}
