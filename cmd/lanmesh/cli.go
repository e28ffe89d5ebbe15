package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
)

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, sock := newFlags("up", "up --login-server URL [--auth-key KEY|file:PATH|- | --auth-key-file PATH | --login-provider NAME [--qr]] [--advertise-routes CIDR,...] [--accept-routes] [--snat-subnet-routes=true] [--hostname NAME] [--advertise-exit-node] [--exit-node NAME|IP [--exit-node-allow-lan-access]] [--coord-fingerprint FP] [--force-reauth] [--timeout 30s]",
		"lanmesh up --login-server https://coord.example:443 --auth-key file:/etc/lanmesh/authkey --advertise-routes 192.168.1.0/24", stderr)
	login := fs.String("login-server", "", "coord's URL (https://host[:port])")
	authKey := fs.String("auth-key", "", "pre-auth key from \"lanmesh-coord keys create\" (used once, never stored); file:PATH reads it from a file, - from stdin; default $"+authKeyEnv+" (keeps it out of ps)")
	authKeyFile := fs.String("auth-key-file", "", "read the pre-auth key from this file (first line)")
	adv := fs.String("advertise-routes", "", "LAN prefixes to offer to the mesh, comma-separated (\"\" to stop)")
	accept := fs.Bool("accept-routes", false, "install peers' approved subnet routes")
	snat := fs.Bool("snat-subnet-routes", true, "masquerade mesh traffic forwarded into the LAN")
	host := fs.String("hostname", "", "name to register with (default: the host name)")
	advExit := fs.Bool("advertise-exit-node", false, "offer this node as an exit node (advertises 0.0.0.0/0 and ::/0; coord must approve them)")
	exitNode := fs.String("exit-node", "", "send internet traffic through this peer (name or mesh IP; \"\" to stop); see lanmesh exit-node list")
	exitLAN := fs.Bool("exit-node-allow-lan-access", false, "with --exit-node: keep directly connected LANs reachable outside the tunnel")
	fp := fs.String("coord-fingerprint", "", "pin of coord's certificate (default: from the auth key)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the first netmap")
	provider := fs.String("login-provider", "", "without an auth key: coord's identity provider to log in with (default: coord's first)")
	forceReauth := fs.Bool("force-reauth", false, "re-authenticate with a new node key (rotation): logs in again (or registers --auth-key); the node keeps its addresses and name, peers get the new key, coord and relays refuse the old one")
	qrFlag := fs.Bool("qr", false, "without an auth key: also print the login URL as a QR code (default: only when stdout is a terminal)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "lanmesh up: unexpected argument %q\n", pos[0])
		return errUsage
	}
	key, err := resolveAuthKey(*authKey, *authKeyFile, os.Getenv)
	if err != nil {
		return err
	}
	req := localapi.UpRequest{LoginServer: *login, AuthKey: key, CoordFingerprint: *fp, Timeout: *timeout, ForceReauth: *forceReauth && key != ""}
	var badRoutes error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "advertise-routes":
			rs, err := parseRoutes(*adv)
			if err != nil {
				badRoutes = err
			}
			req.AdvertiseRoutes = &rs
		case "accept-routes":
			req.AcceptRoutes = accept
		case "snat-subnet-routes":
			req.SNATSubnetRoutes = snat
		case "hostname":
			req.Hostname = host
		case "advertise-exit-node":
			req.AdvertiseExitNode = advExit
		case "exit-node":
			req.ExitNode = exitNode
		case "exit-node-allow-lan-access":
			req.ExitNodeAllowLANAccess = exitLAN
		}
	})
	if badRoutes != nil {
		return badRoutes
	}
	if key == "" {
		// Not joined and no auth key: log in at coord's identity provider
		// (prints a URL and waits), then come up as below.
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := localapi.NewClient(*sock).Status(sctx)
		scancel()
		if err != nil {
			return userErr(err)
		}
		// Log in when not joined, when the node key expired (needs
		// re-auth), or to rotate the key (--force-reauth).
		if st.Self == nil || st.NeedsReauth || *forceReauth {
			lreq := localapi.LoginRequest{LoginServer: *login, CoordFingerprint: *fp, Provider: *provider, ForceReauth: *forceReauth}
			if req.Hostname != nil {
				lreq.Hostname = *req.Hostname
			}
			if err := interactiveLogin(ctx, localapi.NewClient(*sock), lreq, 10*time.Minute, showQR(fs, *qrFlag, stdout), stdout); err != nil {
				return err
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout+10*time.Second)
	defer cancel()
	resp, err := localapi.NewClient(*sock).Up(ctx, req)
	if err != nil {
		return userErr(err)
	}
	addrs := make([]string, len(resp.Addresses))
	for i, a := range resp.Addresses {
		addrs[i] = a.Addr().String()
	}
	fmt.Fprintf(stdout, "%s is up: %s\n", resp.Name, strings.Join(addrs, ", "))
	return nil
}

func parseRoutes(s string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("--advertise-routes: %q is not a CIDR prefix like 192.168.1.0/24", f)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("--advertise-routes: %s has host bits set; did you mean %s?", p, p.Masked())
		}
		out = append(out, p)
	}
	return out, nil
}

func runDown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, sock := newFlags("down", "down", "lanmesh down", stderr)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := localapi.NewClient(*sock).Down(ctx); err != nil {
		return userErr(err)
	}
	fmt.Fprintln(stdout, "disconnected from the mesh; \"lanmesh up\" reconnects")
	return nil
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, sock := newFlags("status", "status [--json]", "lanmesh status --json", stderr)
	asJSON := fs.Bool("json", false, "print JSON (fields in docs/cli.md)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := localapi.NewClient(*sock).Status(ctx)
	if err != nil {
		return userErr(err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st, time.Now())
	return nil
}

func printStatus(w io.Writer, st localapi.Status, now time.Time) {
	coord := "disconnected"
	if st.Coord.Connected {
		coord = "connected"
	}
	if st.Coord.URL == "" {
		coord = "none"
	} else {
		coord += " to " + st.Coord.URL
	}
	fmt.Fprintf(w, "state: %s   coord: %s\n", st.BackendState, coord)
	if st.DNS.Listen != "" && st.DNS.Domain != "" {
		fmt.Fprintf(w, "dns: %s on %s\n", st.DNS.Domain, st.DNS.Listen)
	}
	if e := st.ExitNode; e != nil {
		fmt.Fprintf(w, "exit node: %s\n", exitNodeLine(e))
	}
	if st.Coord.LastError != "" && !st.Coord.Connected {
		fmt.Fprintf(w, "last error: %s", st.Coord.LastError)
		if t, err := time.Parse(time.RFC3339, st.Coord.NextRetry); err == nil {
			fmt.Fprintf(w, " (retry in %s)", ago(t.Sub(now)))
		}
		fmt.Fprintln(w)
	}
	if st.WireGuard.Backend != "" {
		fmt.Fprintf(w, "wireguard: %s (%s)\n", st.WireGuard.Backend, st.WireGuard.Reason)
	}
	if st.NeedsReauth {
		if st.AuthURL != "" {
			fmt.Fprintf(w, "needs re-auth: this node's key expired; log in again at:\n\n\t%s\n\n(or run lanmesh up --auth-key KEY); it rejoins with its addresses and name\n", st.AuthURL)
		} else {
			fmt.Fprintln(w, "needs re-auth: this node's key expired; run lanmesh login, or lanmesh up --auth-key KEY; it rejoins with its addresses and name")
		}
		return
	}
	if st.BackendState == localapi.StateNeedsLogin {
		fmt.Fprintln(w, "not joined: run lanmesh up --login-server URL --auth-key KEY")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMESH IP\tROUTES\tPATH\tLAST HANDSHAKE")
	if s := st.Self; s != nil {
		fmt.Fprintf(tw, "%s (self)\t%s\t%s\t-\t-\n", s.Name, firstAddr(s.Addresses), routes(s.AdvertisedRoutes))
	}
	for _, p := range st.Peers {
		path := "-"
		switch {
		case strings.Contains(p.Path, " "): // "direct 198.18.2.2:41641", "relay fra"
			path = p.Path
		case p.Path != "":
			path = p.Path + " " + p.Endpoint
		}
		hs := "never"
		if t, err := time.Parse(time.RFC3339, p.LastHandshake); err == nil {
			hs = ago(now.Sub(t)) + " ago"
		}
		if !p.Online {
			hs += " (offline)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, firstAddr(p.Addresses), routes(p.Routes), path, hs)
	}
	tw.Flush()
	if st.EngineError != "" {
		fmt.Fprintf(w, "data plane error (retrying): %s\n", st.EngineError)
	}
	for _, p := range st.Peers {
		if p.RelayInCoord {
			fmt.Fprintf(w, "warning: %s is reached through coord's embedded relay: its traffic stops while coord is down (direct paths do not); run a standalone lanmesh-derp (docs/nat-traversal.md)\n", p.Name)
		}
	}
	for _, r := range st.RejectedPeers {
		fmt.Fprintf(w, "left out: %s (%s): %s\n", r.Name, r.NodeKey, r.Reason)
	}
}

func firstAddr(ps []netip.Prefix) string {
	for _, p := range ps {
		if p.Addr().Is4() {
			return p.Addr().String()
		}
	}
	if len(ps) > 0 {
		return ps[0].Addr().String()
	}
	return "-"
}

func routes(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "-"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func ago(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Hour).String()
}

func runPing(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, sock := newFlags("ping", "ping [-c N] [--timeout 5s] NAME|IP [--json]", "lanmesh ping -c 3 router-b", stderr)
	count := fs.Int("c", 1, "number of echoes to send")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for each reply")
	asJSON := fs.Bool("json", false, "print the replies as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *count < 1 || *timeout <= 0 {
		fs.Usage()
		return errUsage
	}
	c := localapi.NewClient(*sock)
	type result struct {
		Target   string                  `json:"target"`
		Sent     int                     `json:"sent"`
		Received int                     `json:"received"`
		Replies  []localapi.PingResponse `json:"replies"`
		Errors   []string                `json:"errors,omitempty"`
	}
	res := result{Target: pos[0], Replies: []localapi.PingResponse{}}
	for i := 0; i < *count; i++ {
		if i > 0 {
			time.Sleep(time.Second)
		}
		rctx, cancel := context.WithTimeout(ctx, *timeout+5*time.Second)
		resp, err := c.Ping(rctx, localapi.PingRequest{Target: pos[0], Seq: i + 1, Timeout: *timeout})
		cancel()
		res.Sent++
		if err != nil {
			var le *localapi.Error
			if !errors.As(err, &le) || le.Code == 400 {
				return userErr(err) // agent down or unknown peer: no point going on
			}
			res.Errors = append(res.Errors, le.Msg)
			if !*asJSON {
				fmt.Fprintln(stderr, le.Msg)
			}
			continue
		}
		res.Received++
		res.Replies = append(res.Replies, resp)
		if !*asJSON {
			via := resp.Endpoint
			switch {
			case strings.HasPrefix(resp.Path, "relay "):
				via = resp.Path
			case via == "":
				via = "unknown path"
			case resp.Path == "relay":
				via = "relay " + via
			}
			fmt.Fprintf(stdout, "pong from %s (%s) via %s in %s\n", resp.Name, resp.IP, via, fmtMs(resp.RTTMs))
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	}
	if res.Received == 0 {
		return exitError{code: 1}
	}
	return nil
}

func fmtMs(ms float64) string {
	if ms < 10 {
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.0fms", ms)
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("version", "version [--json]", "lanmesh version --json", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	v := struct {
		Version string `json:"version"`
		Commit  string `json:"commit"`
		Go      string `json:"go"`
	}{version, commit, runtime.Version()}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(v)
	}
	fmt.Fprintf(stdout, "lanmesh %s", v.Version)
	if v.Commit != "" {
		fmt.Fprintf(stdout, " (%s)", v.Commit)
	}
	fmt.Fprintf(stdout, " %s\n", v.Go)
	return nil
}
