package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
)

func runLogin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, sock := newFlags("login", "login [--login-server URL --coord-fingerprint FP] [--provider NAME] [--hostname NAME] [--timeout 10m] [--qr]",
		"lanmesh login --login-server https://coord.example:443 --coord-fingerprint sha256:...", stderr)
	server := fs.String("login-server", "", "coord's URL (default: the one this node joined)")
	fp := fs.String("coord-fingerprint", "", "pin of coord's certificate (lanmesh-coord fingerprint); default: the stored one")
	provider := fs.String("provider", "", "coord's identity provider to log in with (default: coord's first)")
	host := fs.String("hostname", "", "name to register with (default: the host name)")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long to wait for the login in the browser")
	qrFlag := fs.Bool("qr", false, "also print the login URL as a QR code (default: only when stdout is a terminal)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "lanmesh login: unexpected argument %q\n", pos[0])
		return errUsage
	}
	c := localapi.NewClient(*sock)
	if err := interactiveLogin(ctx, c, localapi.LoginRequest{LoginServer: *server, CoordFingerprint: *fp, Provider: *provider, Hostname: *host}, *timeout, showQR(fs, *qrFlag, stdout), stdout); err != nil {
		return err
	}
	uctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	resp, err := c.Up(uctx, localapi.UpRequest{Timeout: 30 * time.Second})
	if err != nil {
		return userErr(err)
	}
	fmt.Fprintf(stdout, "%s is up: %s\n", resp.Name, addrList(resp.Addresses))
	return nil
}

// showQR is --qr when it was given, else whether stdout is a terminal.
func showQR(fs *flag.FlagSet, qrFlag bool, stdout io.Writer) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "qr" })
	if set {
		return qrFlag
	}
	return isTerminal(stdout)
}

// interactiveLogin prints coord's login URL (and, with withQR, the URL as
// a QR code for a phone) and waits until the user has logged in at the
// identity provider (or the login fails or times out).
func interactiveLogin(ctx context.Context, c *localapi.Client, req localapi.LoginRequest, timeout time.Duration, withQR bool, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lr, err := c.Login(ctx, req)
	if err != nil {
		return userErr(err)
	}
	fmt.Fprintf(stdout, "To log in, open this URL in a browser:\n\n\t%s\n\n", lr.URL)
	if withQR {
		if q, err := qrText(lr.URL); err == nil {
			fmt.Fprintf(stdout, "or scan this QR code:\n\n%s\n", q)
		} else {
			fmt.Fprintf(stdout, "(no QR code: %v)\n\n", err)
		}
	}
	fmt.Fprintf(stdout, "Waiting for the login (until %s)...\n", lr.ExpiresAt.Local().Format("15:04:05"))
	for {
		r, err := c.LoginWait(ctx, lr.ID)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("no login within %s: run lanmesh login again", timeout)
			}
			return userErr(err)
		}
		if !r.Done {
			continue
		}
		if r.Error != "" {
			return fmt.Errorf("%s", r.Error)
		}
		fmt.Fprintf(stdout, "Logged in as %s.\n", r.User)
		return nil
	}
}

func addrList(ps []netip.Prefix) string {
	out := make([]string, len(ps))
	for i, a := range ps {
		out[i] = a.Addr().String()
	}
	return strings.Join(out, ", ")
}

func runLogout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, sock := newFlags("logout", "logout", "lanmesh logout", stderr)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := localapi.NewClient(*sock).Logout(ctx); err != nil {
		return userErr(err)
	}
	fmt.Fprintln(stdout, "logged out: coord expired this node's key; \"lanmesh login\" or \"lanmesh up --auth-key\" joins again")
	return nil
}

// whoisResult is what lanmesh whois prints (--json).
type whoisResult struct {
	Addr string   `json:"addr"`
	Node string   `json:"node"`
	ID   int64    `json:"id"`
	User string   `json:"user,omitempty"`
	Tags []string `json:"tags,omitempty"`
	Self bool     `json:"self,omitempty"`
	// Caps are the app capabilities connections from addr carry to this
	// node (the policy's grants with "app").
	Caps map[string][]json.RawMessage `json:"caps"`
}

func runWhois(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, sock := newFlags("whois", "whois [--json] IP", "lanmesh whois 100.64.0.7", stderr)
	asJSON := fs.Bool("json", false, "print JSON: addr, node, id, user, tags, self, caps")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "lanmesh whois: want one mesh IP address")
		return errUsage
	}
	ip, err := netip.ParseAddr(pos[0])
	if err != nil {
		return fmt.Errorf("whois: %q is not an IP address", pos[0])
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err := localapi.NewClient(*sock).WhoIs(ctx, ip)
	if err != nil {
		return userErr(err)
	}
	res := whoisResult{Addr: w.Addr, Node: w.Node.Name, ID: w.Node.ID, User: w.Node.User, Tags: w.Node.Tags, Self: w.Self, Caps: w.Caps}
	if res.Self {
		res.User, res.Tags = "", nil
	}
	if res.Caps == nil {
		res.Caps = map[string][]json.RawMessage{}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node:\t%s (id %d)\n", res.Node, res.ID)
	switch {
	case res.Self:
		fmt.Fprintf(tw, "user:\t(this node)\n")
	case len(res.Tags) > 0:
		fmt.Fprintf(tw, "tags:\t%s\n", strings.Join(res.Tags, ", "))
		fmt.Fprintf(tw, "owner:\t%s\n", res.User)
	default:
		fmt.Fprintf(tw, "user:\t%s\n", res.User)
	}
	names := make([]string, 0, len(res.Caps))
	for n := range res.Caps {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		vals, _ := json.Marshal(res.Caps[n])
		fmt.Fprintf(tw, "cap:\t%s %s\n", n, vals)
	}
	return tw.Flush()
}
