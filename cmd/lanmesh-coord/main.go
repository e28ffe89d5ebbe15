// Command lanmesh-coord is lanmesh's coordination server and its admin CLI.
// "serve" runs the server; the other commands talk to it over the admin
// socket in the state dir.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lanmesh/lanmesh/coord/adminapi"
)

const defaultStateDir = "/var/lib/lanmesh-coord"

// command is one subcommand: its flags are defined by setup, run gets the
// positional arguments.
type command struct {
	name     string // "keys create"
	args     string // positional synopsis
	summary  string
	examples []string
	setup    func(fs *flag.FlagSet) func(ctx context.Context, g *globals, args []string) error
}

type globals struct {
	stateDir string
	remote   remoteFlags      // remote.go
	client   *adminapi.Client // set by connect with --server
	stdout   io.Writer
	stderr   io.Writer
}

var commands = []*command{serveCmd, usersCreateCmd, usersListCmd, usersDeleteCmd,
	usersDisableCmd, usersEnableCmd, usersRenameCmd, usersRoleCmd, keysCreateCmd, keysListCmd, keysRevokeCmd, keysDeleteCmd,
	nodesListCmd, nodesRenameCmd, nodesExpireCmd, nodesExpiryCmd, nodesTagCmd, nodesDeleteCmd, routesListCmd, routesApproveCmd,
	policyCheckCmd, policySetCmd, policyGetCmd, policyHistoryCmd, policyCmd, fingerprintCmd,
	auditListCmd, apikeysCreateCmd, apikeysListCmd, apikeysRevokeCmd}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	g.initFlags()
	top := flag.NewFlagSet("lanmesh-coord", flag.ContinueOnError)
	top.SetOutput(stderr)
	addGlobalFlags(top, g)
	top.Usage = func() { topUsage(stderr, top) }
	if err := top.Parse(args); err != nil {
		return exitCode(err)
	}
	rest := top.Args()
	if len(rest) == 0 {
		topUsage(stderr, top)
		return 2
	}
	cmd, rest := findCommand(rest)
	if cmd == nil {
		fmt.Fprintf(stderr, "lanmesh-coord: unknown command %q\n\n", strings.Join(top.Args(), " "))
		topUsage(stderr, top)
		return 2
	}
	fs := flag.NewFlagSet("lanmesh-coord "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addGlobalFlags(fs, g)
	runFn := cmd.setup(fs)
	fs.Usage = func() { cmdUsage(stderr, cmd, fs) }
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		return exitCode(err)
	}
	err = nil
	if cmd == serveCmd {
		if g.remote.server != "" && os.Getenv("LANMESH_SERVER") != g.remote.server {
			err = usageError{"--server is for admin commands against a remote coord; serve runs this one (its URL is --server-url)"}
		}
	} else {
		err = g.connect()
	}
	if err == nil {
		err = runFn(ctx, g, pos)
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "lanmesh-coord %s: %v\n\n", cmd.name, err)
			cmdUsage(stderr, cmd, fs)
			return 2
		}
		fmt.Fprintf(stderr, "lanmesh-coord %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

func findCommand(args []string) (*command, []string) {
	for _, c := range commands {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c, args[len(words):]
		}
	}
	return nil, nil
}

// parseInterleaved lets flags follow positional arguments
// ("nodes delete web --state-dir /x").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func topUsage(w io.Writer, top *flag.FlagSet) {
	fmt.Fprint(w, "lanmesh-coord: the lanmesh coordination server and its admin commands.\n\nUsage: lanmesh-coord [--state-dir DIR | --server URL --api-key-file FILE] COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-18s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nGlobal flags:\n")
	top.PrintDefaults()
	fmt.Fprint(w, "\nRun \"lanmesh-coord COMMAND --help\" for a command's flags and examples.\n")
}

func cmdUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: lanmesh-coord %s [flags] %s\n\n%s\n\nFlags:\n", c.name, c.args, c.summary)
	fs.PrintDefaults()
	if len(c.examples) > 0 {
		fmt.Fprint(w, "\nExamples:\n")
		for _, e := range c.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
