package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The agent's command line comes from the package's own init script.
func TestInitCommand(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "firmware", "openwrt", "lanmesh", "files", "lanmesh.init"))
	if err != nil {
		t.Fatal(err)
	}
	args, err := initCommand(b)
	if err != nil || !strings.HasPrefix(args, "agent --uci /etc/config/lanmesh") {
		t.Fatalf("initCommand(shipped init) = %q, %v; want agent --uci /etc/config/lanmesh", args, err)
	}
	for _, bad := range []string{"", "procd_set_param command /bin/x\n", "\tprocd_set_param command \"$PROG\" agent; rm -rf /\n"} {
		if a, err := initCommand([]byte(bad)); err == nil {
			t.Errorf("initCommand(%q) = %q, want an error", bad, a)
		}
	}
}

// The options the benchmark changes exist in the shipped UCI file.
func TestSetUCIOptionShipped(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "firmware", "openwrt", "lanmesh", "files", "lanmesh.config"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, o := range []string{"login_server", "hostname", "dnsmasq_conf", "dnsmasq_reload"} {
		if s, err = setUCIOption(s, o, "x-"+o); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(s, "option "+o+" 'x-"+o+"'") {
			t.Errorf("option %s not set:\n%s", o, s)
		}
	}
	if _, err := setUCIOption(s, "no_such_option", "x"); err == nil {
		t.Error("missing option accepted")
	}
}
