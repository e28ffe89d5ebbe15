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

// The LuCI settings form (luci-app-lanmesh's settings.js) edits real
// options: each names a schema key (or "enabled" of the agent section,
// the init script's) of a section the shipped config has, and the
// settings the OpenWrt issue asks a router owner to reach there are all
// in it.
func TestLuCISettingsForm(t *testing.T) {
	root := filepath.Join("..", "..", "firmware", "openwrt")
	js, err := os.ReadFile(filepath.Join(root, "luci-app-lanmesh", "htdocs", "luci-static", "resources", "view", "lanmesh", "settings.js"))
	if err != nil {
		t.Fatal(err)
	}
	shippedPath := filepath.Join(root, "lanmesh", "files", "lanmesh.config")
	b, err := os.ReadFile(shippedPath)
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := uci.Parse(shippedPath, b)
	if err != nil {
		t.Fatal(err)
	}
	keys := schemaKeys()
	secRe := regexp.MustCompile(`m\.section\(form\.NamedSection, '(\w+)', '(\w+)'`)
	optRe := regexp.MustCompile(`s\.option\(form\.\w+, '(\w+)'`)
	inForm := map[string]bool{}
	typ := ""
	for _, line := range strings.Split(string(js), "\n") {
		if m := secRe.FindStringSubmatch(line); m != nil {
			typ = m[2]
			if s := shipped.Section(m[1]); s == nil || s.Type != typ {
				t.Errorf("settings.js edits section %s (%s), which the shipped config does not have", m[1], m[2])
			}
			continue
		}
		m := optRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		key := typ + "." + m[1]
		if typ == "agent" {
			key = m[1]
		}
		inForm[key] = true
		if _, ok := keys[key]; !ok && !(typ == "agent" && initOnlyKeys[m[1]]) {
			t.Errorf("settings.js option %s of section type %s is no config key (%s)", m[1], typ, key)
		}
	}
	for _, want := range []string{
		"enabled", "backend", "join.login_server", "join.auth_key_file", "join.advertise_routes", "join.accept_routes",
		"join.advertise_exit_node", "join.exit_node", "dns.enabled", "dns.publish_leases", "web.enabled",
	} {
		if !inForm[want] {
			t.Errorf("the LuCI settings form has no %s", want)
		}
	}
}
