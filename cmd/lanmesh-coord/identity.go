package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lanmesh/lanmesh/coord/adminapi"
)

var usersCreateCmd = &command{
	name:    "users create",
	args:    "NAME",
	summary: "create a user; their nodes join with keys from \"keys create --user NAME\"",
	examples: []string{
		"lanmesh-coord users create alice --email alice@home.example",
		"lanmesh-coord users create bob   # named bob@ in policies",
		"lanmesh-coord users create alice --email alice@home.example --admin   # first admin: logs in to the web admin at /admin/",
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		email := fs.String("email", "", "the user's email: how policies name them (default: NAME@); an IdP login with this email becomes this user")
		isAdmin := fs.Bool("admin", false, "give the user the admin role: they may log in to the web admin (/admin/ on coord); autogroup:admin in policies")
		asJSON := fs.Bool("json", false, "print JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 1 {
				return usageError{"want exactly one user name"}
			}
			var u adminapi.User
			if err := admin(g).Do(ctx, "POST", adminapi.PathUsers, adminapi.CreateUserRequest{Name: args[0], Email: *email, Role: roleOf(*isAdmin)}, &u); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, u)
			}
			_, err := fmt.Fprintf(g.stdout, "created user %s (policy login %s, role %s)\n", u.Name, u.Login, u.Role)
			return err
		}
	},
}

var usersListCmd = &command{
	name:     "users list",
	summary:  "list users, their policy logins and node counts",
	examples: []string{"lanmesh-coord users list", "lanmesh-coord users list --json"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 0 {
				return usageError{"users list takes no arguments"}
			}
			var users []adminapi.User
			if err := admin(g).Do(ctx, "GET", adminapi.PathUsers, nil, &users); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, users)
			}
			var rows [][]string
			for _, u := range users {
				rows = append(rows, []string{u.Name, u.Login, u.Role, fmt.Sprint(u.Nodes), userState(u), when(u.Created)})
			}
			return table(g.stdout, "NAME\tLOGIN\tROLE\tNODES\tSTATE\tCREATED", rows)
		}
	},
}

func roleOf(isAdmin bool) string {
	if isAdmin {
		return adminapi.RoleAdmin
	}
	return adminapi.RoleMember
}

var usersRoleCmd = &command{
	name:    "users role",
	args:    "NAME admin|member",
	summary: "set a user's role: admins may log in to the web admin (/admin/ on coord); taking the role away ends their web sessions at their next request",
	examples: []string{
		"lanmesh-coord users role alice admin",
		"lanmesh-coord users role bob member --json",
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print the user as JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 2 || (args[1] != adminapi.RoleAdmin && args[1] != adminapi.RoleMember) {
				return usageError{"want a user name and a role: admin or member"}
			}
			var u adminapi.User
			if err := admin(g).Do(ctx, "POST", adminapi.UserActionPath(args[0], "role"), adminapi.RoleRequest{Role: args[1]}, &u); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, u)
			}
			_, err := fmt.Fprintf(g.stdout, "user %s now has the role %s\n", u.Name, u.Role)
			return err
		}
	},
}

var usersDeleteCmd = &command{
	name:     "users delete",
	args:     "NAME",
	summary:  "delete a user with their keys and nodes: the nodes leave every netmap at once (the built-in user admin too)",
	examples: []string{"lanmesh-coord users delete bob", "lanmesh-coord users delete bob --json"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 1 {
				return usageError{"want exactly one user name"}
			}
			var out adminapi.DeletedUser
			if err := admin(g).Do(ctx, "DELETE", adminapi.UserPath(args[0]), nil, &out); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, out)
			}
			_, err := fmt.Fprintf(g.stdout, "deleted user %s and %d node(s)\n", out.Name, len(out.Nodes))
			return err
		}
	},
}

var nodesRenameCmd = &command{
	name:     "nodes rename",
	args:     "ID|NAME NEWNAME",
	summary:  "rename a node (a unique DNS label); peers resolve the new name at once, the old one stops",
	examples: []string{"lanmesh-coord nodes rename router-a home-router", "lanmesh-coord nodes rename 3 nas"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 2 {
				return usageError{"want a node (ID or name) and its new name"}
			}
			var out struct {
				ID      int64  `json:"id"`
				Name    string `json:"name"`
				OldName string `json:"old_name"`
			}
			if err := admin(g).Do(ctx, "POST", adminapi.NodeRenamePath(args[0]), adminapi.RenameRequest{Name: args[1]}, &out); err != nil {
				return err
			}
			_, err := fmt.Fprintf(g.stdout, "renamed node %d: %s -> %s\n", out.ID, out.OldName, out.Name)
			return err
		}
	},
}

// readPolicyFile reads FILE, or stdin for "-".
func readPolicyFile(name string) (adminapi.PolicyRequest, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20+1))
		name = "stdin"
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return adminapi.PolicyRequest{}, err
	}
	if len(b) > 1<<20 {
		return adminapi.PolicyRequest{}, fmt.Errorf("%s: larger than 1 MiB", name)
	}
	return adminapi.PolicyRequest{Name: filepath.Base(name), Body: string(b)}, nil
}

func policyFileCmd(name, path, summary, verb string, examples []string) *command {
	return &command{
		name: name, args: "FILE", summary: summary, examples: examples,
		setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, g *globals, args []string) error {
				if len(args) != 1 {
					return usageError{"want exactly one policy file (- for stdin)"}
				}
				req, err := readPolicyFile(args[0])
				if err != nil {
					return err
				}
				var res adminapi.PolicyResult
				if err := admin(g).Do(ctx, "POST", path, req, &res); err != nil {
					return fmt.Errorf("policy refused:\n%w", err)
				}
				if *asJSON {
					return printJSON(g.stdout, res)
				}
				msg := fmt.Sprintf("%s: %s (%d nodes, %d tests passed)", req.Name, verb, res.Nodes, res.Tests)
				if res.Version != 0 {
					msg += fmt.Sprintf(", version %d", res.Version)
				}
				_, err = fmt.Fprintln(g.stdout, msg)
				return err
			}
		},
	}
}

var policyCheckCmd = policyFileCmd("policy check", adminapi.PathPolicyCheck,
	"parse a policy, compile it for the current nodes and run its tests, without applying it",
	"ok", []string{"lanmesh-coord policy check policy.hujson"})

var policySetCmd = policyFileCmd("policy set", adminapi.PathPolicy,
	"check a policy and, if it passes, make it the mesh's policy (a new version); nodes get it at once",
	"applied", []string{"lanmesh-coord policy set policy.hujson", "lanmesh-coord policy set - < policy.hujson"})

var policyGetCmd = &command{
	name:     "policy get",
	summary:  "print the current policy file (or say that the default policy applies)",
	examples: []string{"lanmesh-coord policy get > policy.hujson", "lanmesh-coord policy get --json"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print JSON")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 0 {
				return usageError{"policy get takes no arguments"}
			}
			var p adminapi.Policy
			if err := admin(g).Do(ctx, "GET", adminapi.PathPolicy, nil, &p); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, p)
			}
			if p.Default {
				_, err := fmt.Fprintln(g.stdout, "// no policy set: the default applies (each user's devices and the LANs they route reach each other)")
				return err
			}
			body := p.Body
			if !strings.HasSuffix(body, "\n") {
				body += "\n"
			}
			_, err := io.WriteString(g.stdout, body)
			return err
		}
	},
}

var policyHistoryCmd = &command{
	name:     "policy history",
	summary:  "list stored policy versions, oldest first",
	examples: []string{"lanmesh-coord policy history", "lanmesh-coord policy history --json"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print JSON (bodies included)")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 0 {
				return usageError{"policy history takes no arguments"}
			}
			var hist []adminapi.Policy
			if err := admin(g).Do(ctx, "GET", adminapi.PathPolicyHistory, nil, &hist); err != nil {
				return err
			}
			if *asJSON {
				return printJSON(g.stdout, hist)
			}
			var rows [][]string
			for _, p := range hist {
				rows = append(rows, []string{fmt.Sprint(p.Version), when(p.Created), fmt.Sprint(len(p.Body))})
			}
			return table(g.stdout, "VERSION\tCREATED\tBYTES", rows)
		}
	},
}
