package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/lanmesh/lanmesh/coord/adminapi"
	"github.com/lanmesh/lanmesh/coord/policy"
)

// policyCmd answers "lanmesh-coord policy" and "policy --help" with the
// list of policy commands.
var policyCmd = &command{
	name: "policy",
	args: "check|set|get|history ...",
	summary: "manage the access policy (docs/policy.md):\n" +
		"  policy check FILE    check a policy offline: parse, validate, run its tests (no coord needed)\n" +
		"  policy set FILE      check a policy on coord and make it the mesh's policy\n" +
		"  policy get           print the current policy\n" +
		"  policy history       list stored policy versions",
	examples: []string{"lanmesh-coord policy check policy.hujson", "lanmesh-coord policy check --strict policy.hujson",
		"lanmesh-coord policy set policy.hujson"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) == 0 {
				return usageError{"want a policy command: check, set, get or history"}
			}
			return usageError{fmt.Sprintf("unknown policy command %q (want check, set, get or history)", args[0])}
		}
	},
}

// readPolicyFile reads FILE, or stdin for "-".
func readPolicyFile(name string) (adminapi.PolicyRequest, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, policy.MaxPolicyBytes+1))
		name = "stdin"
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return adminapi.PolicyRequest{}, err
	}
	if len(b) > policy.MaxPolicyBytes {
		return adminapi.PolicyRequest{}, fmt.Errorf("%s: larger than %d MiB", name, policy.MaxPolicyBytes>>20)
	}
	return adminapi.PolicyRequest{Name: filepath.Base(name), Body: string(b)}, nil
}

// checkResult is policy check's --json output.
type checkResult struct {
	File        string   `json:"file"`
	OK          bool     `json:"ok"`
	Tests       int      `json:"tests"`
	Errors      []string `json:"errors,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
	NotPortable []string `json:"not_portable,omitempty"`
	// Live is the running coord's verdict with --live.
	Live *adminapi.PolicyResult `json:"live,omitempty"`
}

var errRefused = errors.New("policy refused")

var policyCheckCmd = &command{
	name: "policy check", args: "FILE",
	summary: "check a policy offline, without a running coord: parse it, validate every rule and run its tests\n" +
		"(tests are judged on the policy itself: users, tags and addresses they name get stand-in devices).\n" +
		"Every error is reported, each as FILE:LINE:COL; Tailscale settings lanmesh accepts without effect are\n" +
		"listed as warnings. Exit status: 0 accepted, 1 refused, 2 usage error.",
	examples: []string{"lanmesh-coord policy check policy.hujson",
		"lanmesh-coord policy check --strict policy.hujson   # also refuse what Tailscale would refuse (nested groups, ...)",
		"lanmesh-coord policy check --live policy.hujson     # also compile it for the running coord's nodes",
		"lanmesh-coord policy check --json - < policy.hujson"},
	setup: func(fs *flag.FlagSet) func(context.Context, *globals, []string) error {
		asJSON := fs.Bool("json", false, "print the result as JSON")
		strict := fs.Bool("strict", false, "refuse lanmesh extensions that would not carry back to Tailscale (nested groups, logins without a domain, ...)")
		live := fs.Bool("live", false, "also ask the running coord (admin socket) to compile the policy for its current nodes")
		return func(ctx context.Context, g *globals, args []string) error {
			if len(args) != 1 {
				return usageError{"want exactly one policy file (- for stdin)"}
			}
			req, err := readPolicyFile(args[0])
			if err != nil {
				return err
			}
			res := checkPolicyOffline(req, *strict)
			if res.OK && *live {
				var lr adminapi.PolicyResult
				if err := admin(g).Do(ctx, "POST", adminapi.PathPolicyCheck, req, &lr); err != nil {
					if unreachable(err) {
						return fmt.Errorf("the policy passed offline, but the coord could not be asked (--live): %w", err)
					}
					res.OK = false
					res.Errors = append(res.Errors, strings.Split(err.Error(), "\n")...)
				} else {
					res.Live = &lr
				}
			}
			if *asJSON {
				if err := printJSON(g.stdout, res); err != nil {
					return err
				}
				if !res.OK {
					return fmt.Errorf("%s: %w (%d errors)", req.Name, errRefused, len(res.Errors))
				}
				return nil
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(g.stdout, w)
			}
			for _, w := range res.NotPortable {
				fmt.Fprintln(g.stdout, w)
			}
			if !res.OK {
				for _, e := range res.Errors {
					fmt.Fprintln(g.stdout, e)
				}
				return fmt.Errorf("%s: %w (%d errors)", req.Name, errRefused, len(res.Errors))
			}
			msg := fmt.Sprintf("%s: ok (%d tests passed", req.Name, res.Tests)
			if n := len(res.Warnings); n > 0 {
				msg += fmt.Sprintf(", %d warnings", n)
			}
			msg += ")"
			if res.Live != nil {
				msg += fmt.Sprintf("; on coord: ok for its %d nodes", res.Live.Nodes)
			}
			_, err = fmt.Fprintln(g.stdout, msg)
			return err
		}
	},
}

// checkPolicyOffline parses and checks a policy with no coord: its
// tests run against stand-in devices only.
func checkPolicyOffline(req adminapi.PolicyRequest, strict bool) checkResult {
	res := checkResult{File: req.Name}
	d := policy.Diagnose(req.Name, []byte(req.Body))
	for _, e := range d.Errors {
		res.Errors = append(res.Errors, e.Error())
	}
	if d.Policy != nil {
		res.Tests = len(d.Policy.Tests)
		if err := policy.Check(d.Policy, nil); err != nil {
			res.Errors = append(res.Errors, splitErrors(err)...)
		}
	}
	for _, w := range d.Warnings {
		res.Warnings = append(res.Warnings, w.Error())
	}
	for _, e := range d.NotPortable {
		if strict {
			res.Errors = append(res.Errors, e.Error()+" (--strict)")
		} else {
			res.NotPortable = append(res.NotPortable, e.Error()+" (not portable to Tailscale; --strict refuses it)")
		}
	}
	res.OK = len(res.Errors) == 0
	return res
}

// unreachable reports whether err means the coord could not be asked
// (no socket, not running), as opposed to an answer refusing the policy.
func unreachable(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

// splitErrors lists the errors in err, one per problem.
func splitErrors(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

var policySetCmd = &command{
	name: "policy set", args: "FILE",
	summary:  "check a policy on the running coord (its current nodes included) and, if it passes, make it the mesh's\npolicy (a new version); nodes get it at once",
	examples: []string{"lanmesh-coord policy set policy.hujson", "lanmesh-coord policy set - < policy.hujson"},
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
			if err := admin(g).Do(ctx, "POST", adminapi.PathPolicy, req, &res); err != nil {
				if unreachable(err) {
					return fmt.Errorf("policy not set: %w", err)
				}
				return fmt.Errorf("policy refused:\n%w", err)
			}
			if *asJSON {
				return printJSON(g.stdout, res)
			}
			_, err = fmt.Fprintf(g.stdout, "%s: applied (%d nodes, %d tests passed), version %d\n", req.Name, res.Nodes, res.Tests, res.Version)
			return err
		}
	},
}

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
