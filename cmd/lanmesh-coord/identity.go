package main

import (
	"context"
	"flag"
	"fmt"

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
