package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
)

// exitNodeRow is one line of `lanmesh exit-node list --json`.
type exitNodeRow struct {
	ID       int64    `json:"id"`
	Name     string   `json:"name"`
	IP       string   `json:"ip"`
	Routes   []string `json:"routes"` // the approved default routes it offers
	Online   bool     `json:"online"`
	Selected bool     `json:"selected"`
}

func runExitNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, sock := newFlags("exit-node", "exit-node list [--json]", "lanmesh exit-node list", stderr)
	asJSON := fs.Bool("json", false, `print {"exit_nodes":[{"id","name","ip","routes","online","selected"}],"selected":{...}|null}`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "list" {
		fs.Usage()
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := localapi.NewClient(*sock).Status(ctx)
	if err != nil {
		return userErr(err)
	}
	rows := []exitNodeRow{}
	for _, p := range st.Peers {
		if !p.ExitNodeOption {
			continue
		}
		r := exitNodeRow{ID: p.ID, Name: p.Name, IP: firstAddr(p.Addresses), Routes: []string{}, Online: p.Online, Selected: p.ExitNode}
		for _, rt := range p.Routes {
			if rt.Bits() == 0 {
				r.Routes = append(r.Routes, rt.String())
			}
		}
		rows = append(rows, r)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			ExitNodes []exitNodeRow            `json:"exit_nodes"`
			Selected  *localapi.ExitNodeStatus `json:"selected"`
		}{rows, st.ExitNode})
	}
	if len(rows) == 0 {
		fmt.Fprintln(stdout, "no peer offers an approved exit route (lanmesh up --advertise-exit-node on a router, then approve 0.0.0.0/0 and ::/0 on coord)")
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tMESH IP\tROUTES\tSTATUS")
		for _, r := range rows {
			status := "offline"
			if r.Online {
				status = "online"
			}
			if r.Selected {
				status += ", selected"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.IP, strings.Join(r.Routes, ","), status)
		}
		tw.Flush()
	}
	if st.ExitNode != nil {
		fmt.Fprintf(stdout, "exit node: %s\n", exitNodeLine(st.ExitNode))
	}
	return nil
}

// exitNodeLine is how status and exit-node list show the exit node.
func exitNodeLine(e *localapi.ExitNodeStatus) string {
	name := e.Selected
	if e.Name != "" {
		name = e.Name
		if e.IP != "" {
			name += " (" + e.IP + ")"
		}
	}
	lan := ""
	if e.AllowLANAccess {
		lan = ", LAN access allowed"
	}
	if !e.Active {
		return fmt.Sprintf("%s, NOT in use: %s; internet traffic is dropped until it is (lanmesh up --exit-node= to stop)", name, e.Reason)
	}
	return name + lan
}
