package policy

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateCompat = flag.Bool("update-compat", false, "rewrite testdata/compat/**/*.filter from the compiler's output")

// compatNodes is the mesh the compatibility suite compiles for: alice
// (two devices) and bob, a router tagged tag:router serving lan1 and an
// exit route, a server tagged tag:server.
func compatNodes() []Node {
	return []Node{
		{ID: 1, User: "alice@example.com", Roles: []string{"admin"}, Addresses: pfx("100.64.0.1/32", "fd7a::1/128")},
		{ID: 2, User: "bob@example.com", Addresses: pfx("100.64.0.2/32")},
		{ID: 3, Owner: "alice@example.com", Tags: []string{"tag:router"}, Addresses: pfx("100.64.0.3/32"),
			ApprovedRoutes: pfx("198.19.1.0/24", "0.0.0.0/0"), AdvertisedRoutes: pfx("198.19.1.0/24", "0.0.0.0/0")},
		{ID: 4, Owner: "alice@example.com", Tags: []string{"tag:server"}, Addresses: pfx("100.64.0.4/32")},
		{ID: 5, User: "alice@example.com", Addresses: pfx("100.64.0.5/32")},
	}
}

// renderCompiled prints every node's peers and filters, one line each,
// in a form that is stable and reviewable.
func renderCompiled(c *Compiled) string {
	var b strings.Builder
	for _, id := range c.Nodes() {
		r, _ := c.Node(id)
		fmt.Fprintf(&b, "node %d peers %v\n", id, r.Peers())
		for _, fr := range r.Filter.Inbound {
			fmt.Fprintf(&b, "node %d inbound src=%v dst=%v ports=%v protos=%v\n", id, fr.Src, fr.Dst, fr.Ports, fr.Protos)
		}
		for _, fr := range r.Filter.Forward {
			fmt.Fprintf(&b, "node %d forward src=%v dst=%v ports=%v protos=%v\n", id, fr.Src, fr.Dst, fr.Ports, fr.Protos)
		}
		for _, g := range r.Filter.Caps {
			caps, _ := json.Marshal(g.Caps)
			fmt.Fprintf(&b, "node %d caps src=%v %s\n", id, g.Src, caps)
		}
		for _, v := range r.Filter.Via {
			fmt.Fprintf(&b, "node %d via %v through %v\n", id, v.Dst, v.Peers)
		}
		if r.CapMapJSON != nil {
			fmt.Fprintf(&b, "node %d cap_map %s\n", id, r.CapMapJSON)
		}
	}
	return b.String()
}

// TestCompat runs the compatibility suite in testdata/compat: each
// NAME.hujson is a policy built from what Tailscale's documentation
// says or what Headscale's recordings of Tailscale's verdicts show (the
// file's first line names the source). NAME.want says "accept" or
// "refuse: <part of the error>", and may list "warning: <part>" lines,
// "no-warning: <part>" lines (no warning may contain it) and a
// "strict-refuse: <part>" line (refused by policy check --strict).
// For accepted policies, NAME.filter is the expected compiled result
// on compatNodes (go test -run TestCompat -update-compat rewrites it).
func TestCompat(t *testing.T) {
	files, _ := filepath.Glob("testdata/compat/*/*.hujson")
	if len(files) < 40 {
		t.Fatalf("only %d compat cases", len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(f, "testdata/compat/"), ".hujson")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			wantB, err := os.ReadFile(strings.TrimSuffix(f, ".hujson") + ".want")
			if err != nil {
				t.Fatal(err)
			}
			d := Diagnose(filepath.Base(f), b)
			var errs []string
			for _, e := range d.Errors {
				errs = append(errs, e.Error())
			}
			var c *Compiled
			if d.Policy != nil {
				if err := Check(d.Policy, compatNodes()); err != nil {
					errs = append(errs, err.Error())
				} else if c, err = Compile(d.Policy, compatNodes()); err != nil {
					t.Fatal(err)
				}
			}
			got := strings.Join(errs, "\n")
			var warns, notPortable []string
			for _, w := range d.Warnings {
				warns = append(warns, w.Error())
			}
			for _, w := range d.NotPortable {
				notPortable = append(notPortable, w.Error())
			}
			for _, line := range strings.Split(strings.TrimSpace(string(wantB)), "\n") {
				kind, arg, _ := strings.Cut(line, ": ")
				switch kind {
				case "accept":
					if len(errs) > 0 {
						t.Errorf("want accepted, got:\n%s", got)
					}
				case "refuse":
					if !strings.Contains(got, arg) {
						t.Errorf("want refused with %q, got:\n%s", arg, got)
					}
				case "warning":
					if !strings.Contains(strings.Join(warns, "\n"), arg) {
						t.Errorf("want warning %q, got:\n%s", arg, strings.Join(warns, "\n"))
					}
				case "no-warning":
					if strings.Contains(strings.Join(warns, "\n"), arg) {
						t.Errorf("want no warning naming %q, got:\n%s", arg, strings.Join(warns, "\n"))
					}
				case "strict-refuse":
					if !strings.Contains(strings.Join(notPortable, "\n"), arg) {
						t.Errorf("want --strict refusal %q, got %v", arg, notPortable)
					}
				default:
					t.Fatalf("bad .want line %q", line)
				}
			}
			if c == nil {
				return
			}
			ff := strings.TrimSuffix(f, ".hujson") + ".filter"
			rendered := renderCompiled(c)
			if *updateCompat {
				if err := os.WriteFile(ff, []byte(rendered), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(ff)
			if err != nil {
				t.Fatalf("%v (run go test -run TestCompat -update-compat and review the file)", err)
			}
			if string(want) != rendered {
				t.Errorf("compiled result differs from %s:\ngot:\n%s\nwant:\n%s", ff, rendered, want)
			}
		})
	}
}
