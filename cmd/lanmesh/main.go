// Command lanmesh is the router binary: the agent daemon (`lanmesh agent`)
// and the CLI that drives it over the local API socket. One multi-call
// binary to save flash; it links no templates, net/rpc, gRPC or go-plugin.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/agent/localapi"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"agent", "run the daemon", runAgent},
		{"up", "join the mesh or reconnect", runUp},
		{"down", "disconnect from the mesh (keeps keys)", runDown},
		{"login", "join the mesh by logging in at coord's identity provider", runLogin},
		{"logout", "expire this node's key on coord and leave the mesh", runLogout},
		{"whois", "show the node, user and tags of a mesh address", runWhois},
		{"status", "show this node, coord and peers", runStatus},
		{"ping", "ICMP echo to a peer through the mesh", runPing},
		{"netcheck", "check UDP, NAT type and relay latencies", runNetcheck},
		{"exit-node", "list the peers that offer an exit node", runExitNode},
		{"version", "print the version", runVersion},
	}
}

// exitError carries an exit code; its message (if any) was printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// A global --socket may come before the command.
	var global []string
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		a := args[0]
		if a == "-h" || a == "-help" || a == "--help" {
			usage(stdout)
			return 0
		}
		global = append(global, a)
		args = args[1:]
		if (a == "--socket" || a == "-socket") && len(args) > 0 {
			global = append(global, args[0])
			args = args[1:]
		}
	}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(context.Background(), append(global, args[1:]...), stdout, stderr)
		var ee exitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ee):
			return ee.code
		case errors.Is(err, errUsage):
			return 2
		}
		fmt.Fprintf(stderr, "lanmesh %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "lanmesh: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: lanmesh [--socket PATH] COMMAND [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun \"lanmesh COMMAND --help\" for a command's flags and an example.")
}

// newFlags makes a command's flag set with the global --socket and a
// usage text that ends with an example.
func newFlags(name, synopsis, example string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("lanmesh "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := os.Getenv("LANMESH_SOCKET")
	if def == "" {
		def = config.DefaultSocket
	}
	sock := fs.String("socket", def, "the agent's local API socket (env LANMESH_SOCKET)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: lanmesh %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nExample:\n  %s\n", example)
	}
	return fs, sock
}

// parse parses args, allowing flags after positional arguments
// (`lanmesh ping router-b -c 3`), and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// userErr turns a local API error into the line the user sees: the
// agent's (or coord's) own message.
func userErr(err error) error {
	var le *localapi.Error
	if errors.As(err, &le) {
		return errors.New(le.Msg)
	}
	return err
}
