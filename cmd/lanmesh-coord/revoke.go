package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/lanmesh/lanmesh/coord/adminapi"
)

// Admin commands that take access away or give it back: keys revoke and
// delete, users disable, enable and rename, nodes expire.

// keyState says whether a key can still join nodes.
func keyState(k adminapi.Key) string {
	switch {
	case !k.Revoked.IsZero():
		return "revoked"
	case !time.Now().Before(k.Expiry):
		return "expired"
	case k.Used && !k.Reusable:
		return "used"
	}
	return "usable"
}

func userState(u adminapi.User) string {
	if u.Disabled {
		return "disabled"
	}
	return "enabled"
}

var keysRevokeCmd = &command{
	name:    "keys revoke",
	args:    "ID",
	summary: "revoke a pre-auth key: every later registration with it fails at once; nodes that joined with it keep working",
	examples: []string{
		"lanmesh-coord keys revoke 3f2a9c1b7d4e",
		"lanmesh-coord keys list   # the ID column",
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print the key as JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 1 {
				return usageError{"want exactly one key ID (see keys list)"}
			}
			var k adminapi.Key
			if err := admin(g).Do(ctx, "POST", adminapi.KeyPath(args[0])+"/revoke", nil, &k); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, k)
			}
			_, err := fmt.Fprintf(g.stdout, "revoked auth key %s (user %s) at %s\n", k.ID, k.User, when(k.Revoked))
			return err
		}
	},
}

var keysDeleteCmd = &command{
	name:     "keys delete",
	args:     "ID",
	summary:  "delete a pre-auth key (it fails like an unknown key from then on); nodes that joined with it keep working",
	examples: []string{"lanmesh-coord keys delete 3f2a9c1b7d4e"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 1 {
				return usageError{"want exactly one key ID (see keys list)"}
			}
			var out adminapi.DeletedKey
			if err := admin(g).Do(ctx, "DELETE", adminapi.KeyPath(args[0]), nil, &out); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, out)
			}
			_, err := fmt.Fprintf(g.stdout, "deleted auth key %s\n", out.ID)
			return err
		}
	},
}

// userAccessCmd is users disable and users enable.
func userAccessCmd(action, summary string, examples ...string) *command {
	return &command{
		name:     "users " + action,
		args:     "NAME",
		summary:  summary,
		examples: examples,
		setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
			asJSON := fs.Bool("json", false, "print the user as JSON")
			return func(ctx context.Context, g *globals, args []string) error {
				if len(args) != 1 {
					return usageError{"want exactly one user name"}
				}
				var u adminapi.User
				if err := admin(g).Do(ctx, "POST", adminapi.UserActionPath(args[0], action), nil, &u); err != nil {
					return err
				}
				if *asJSON {
					return printJSON(g.stdout, u)
				}
				_, err := fmt.Fprintf(g.stdout, "user %s %sd (%d node(s))\n", u.Name, action, u.Nodes)
				return err
			}
		},
	}
}

var usersDisableCmd = userAccessCmd("disable",
	"disable a user: all their nodes leave every netmap and relay at once and cannot register or use their keys; nothing is deleted",
	"lanmesh-coord users disable bob", "lanmesh-coord users disable bob --json")

var usersEnableCmd = userAccessCmd("enable",
	"enable a disabled user: their nodes come back with the same names and addresses",
	"lanmesh-coord users enable bob")

var usersRenameCmd = &command{
	name:    "users rename",
	args:    "OLD NEW",
	summary: "rename a user; their nodes and keys move with them (a user without --email is NEW@ in policies from then on)",
	examples: []string{
		"lanmesh-coord users rename bob robert",
		"lanmesh-coord users rename admin family --json",
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print the user as JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 2 {
				return usageError{"want the user's name and the new name"}
			}
			var u adminapi.User
			if err := admin(g).Do(ctx, "POST", adminapi.UserActionPath(args[0], "rename"), adminapi.RenameRequest{Name: args[1]}, &u); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, u)
			}
			_, err := fmt.Fprintf(g.stdout, "renamed user %s -> %s (%d node(s), policy login %s)\n", u.OldName, u.Name, u.Nodes, u.Login)
			return err
		}
	},
}

var nodesExpireCmd = &command{
	name:    "nodes expire",
	args:    "ID|NAME",
	summary: "expire a node's key now: peers and relays drop it at once; the node must join again with an auth key",
	examples: []string{
		"lanmesh-coord nodes expire laptop-bob",
		"lanmesh up --login-server https://coord.example.net --auth-key KEY   # on the node, to come back",
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print the node as JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 1 {
				return usageError{"want exactly one node ID or name"}
			}
			var n adminapi.Node
			if err := admin(g).Do(ctx, "POST", adminapi.NodeExpirePath(args[0]), nil, &n); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, n)
			}
			_, err := fmt.Fprintf(g.stdout, "expired the key of node %d (%s) at %s\n", n.ID, n.Name, when(n.KeyExpiry))
			return err
		}
	},
}
