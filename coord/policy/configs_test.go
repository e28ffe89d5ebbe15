package policy

import (
	"os"
	"testing"
)

// TestConfigsPolicyExample: the example policy users copy
// (configs/policy.hujson, explained in docs/policy.md) parses and passes
// its own tests on the home-lab mesh, so the documentation never ships a
// policy coord would refuse.
func TestConfigsPolicyExample(t *testing.T) {
	b, err := os.ReadFile("../../configs/policy.hujson")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse("configs/policy.hujson", b)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Tests) == 0 {
		t.Fatal("the example policy has no tests; docs/policy.md promises some")
	}
	if err := Check(p, homeLabNodes()); err != nil {
		t.Fatal(err)
	}
	// The same policy with no devices yet (a fresh mesh): tests run on
	// probe nodes, and the LAN tests need the routers, so only parsing
	// and compiling must work.
	if _, err := Compile(p, nil); err != nil {
		t.Fatal(err)
	}
}
