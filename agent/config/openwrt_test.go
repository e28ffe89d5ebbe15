package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/agent/config/uci"
)

// The /etc/config/lanmesh the OpenWrt package ships must load as it is,
// and docs/openwrt.md's table of options must match its defaults.
func TestShippedOpenWrtConfig(t *testing.T) {
	shipped := filepath.Join("..", "..", "firmware", "openwrt", "lanmesh", "files", "lanmesh.config")
	net := filepath.Join(t.TempDir(), "network")
	if err := os.WriteFile(net, []byte(testNetwork), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Sources{UCI: shipped, Env: []string{"LANMESH_NETWORK_CONFIG=" + net}})
	if err != nil {
		t.Fatalf("shipped config does not load: %v", err)
	}
	if c.StateDir != "/etc/lanmesh" || !c.Join.AcceptRoutes || c.Join.LoginServer != "" {
		t.Errorf("shipped config = %+v", c)
	}
	if r, err := c.AdvertiseRoutes(); err != nil || len(r) != 1 || r[0].String() != "198.18.7.0/24" {
		t.Errorf("advertise lan = %v, %v", r, err)
	}

	b, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	f, err := uci.Parse(shipped, b)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "openwrt.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `(\\w+)\\.(\\w+)` \\| ([^|]+) \\|").FindAllStringSubmatch(string(doc), -1)
	if len(rows) < 10 {
		t.Fatalf("docs/openwrt.md: found %d option rows, want the table of options", len(rows))
	}
	for _, r := range rows {
		sec, opt, want := r[1], r[2], strings.Trim(strings.TrimSpace(r[3]), "`")
		if want == "empty" {
			want = ""
		}
		s := f.Section(sec)
		if s == nil {
			t.Errorf("docs/openwrt.md names %s.%s, but the shipped config has no section %q", sec, opt, sec)
			continue
		}
		if got := strings.Join(s.Values(opt), " "); s.Options[opt] != "" || len(s.Lists[opt]) > 0 || want != "" {
			if v, ok := s.Options[opt]; ok {
				got = v
			}
			if got != want {
				t.Errorf("docs/openwrt.md says %s.%s defaults to %q, the shipped config has %q", sec, opt, want, got)
			}
		}
	}
}
