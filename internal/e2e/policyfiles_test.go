package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/lanmesh/lanmesh/coord/policy"
)

// TestPolicyFiles: every policy in testdata parses and passes its own
// tests against the nodes of the ACL world, so a failing end-to-end run
// points at the system, not at a broken fixture. Needs no root.
func TestPolicyFiles(t *testing.T) {
	pfx := netip.MustParsePrefix
	nodes := []policy.Node{
		{ID: 1, User: "ops@example.com", Owner: "ops@example.com", Tags: []string{"tag:router"}, Addresses: []netip.Prefix{pfx("100.64.0.1/32")},
			ApprovedRoutes: []netip.Prefix{pfx("198.19.1.0/24")}, AdvertisedRoutes: []netip.Prefix{pfx("198.19.1.0/24")}},
		{ID: 2, User: "ops@example.com", Owner: "ops@example.com", Tags: []string{"tag:router"}, Addresses: []netip.Prefix{pfx("100.64.0.2/32")},
			ApprovedRoutes: []netip.Prefix{pfx("198.19.2.0/24")}, AdvertisedRoutes: []netip.Prefix{pfx("198.19.2.0/24")}},
		{ID: 3, User: "alice@example.com", Owner: "alice@example.com", Addresses: []netip.Prefix{pfx("100.64.0.3/32")}},
		{ID: 4, User: "bob@example.com", Owner: "bob@example.com", Addresses: []netip.Prefix{pfx("100.64.0.4/32")}},
		{ID: 5, User: "alice@example.com", Owner: "alice@example.com", Tags: []string{"tag:iot"}, Addresses: []netip.Prefix{pfx("100.64.0.5/32")}},
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.hujson"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no policies in testdata (%v)", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := policy.Parse(filepath.Base(f), b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if err := policy.Check(p, nodes); err != nil {
			t.Errorf("%s: its own tests fail: %v", f, err)
		}
	}
}
