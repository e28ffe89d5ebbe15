package opkg

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

func luciDir(t *testing.T) string {
	return filepath.Join(repoRoot(t), "firmware", "openwrt", "luci-app-lanmesh")
}

// TestLuCIViewsParse runs node --check on every LuCI view.
func TestLuCIViewsParse(t *testing.T) {
	node := testenv.RequireTool(t, "node", "nodejs")
	views, _ := filepath.Glob(filepath.Join(luciDir(t), "htdocs/luci-static/resources/view/lanmesh/*.js"))
	if len(views) != 2 {
		t.Fatalf("found views %v, want settings.js and status.js", views)
	}
	for _, v := range views {
		if out, err := exec.Command(node, "--check", v).CombinedOutput(); err != nil {
			t.Errorf("node --check %s: %v\n%s", filepath.Base(v), err, out)
		}
		b, _ := os.ReadFile(v)
		if !strings.HasPrefix(string(b), "'use strict';\n'require view';") {
			t.Errorf("%s: a LuCI view starts with 'use strict' and 'require view'", filepath.Base(v))
		}
	}
}

// TestLuCIMenuAndACL checks the menu and ACL JSON: valid, the menu's views
// exist, the menu depends on the ACL group, the ACL grants only the
// lanmesh UCI config and exact commands (no wildcards, no shell).
func TestLuCIMenuAndACL(t *testing.T) {
	dir := luciDir(t)
	var menu map[string]struct {
		Title  string `json:"title"`
		Action struct {
			Type string `json:"type"`
			Path string `json:"path"`
		} `json:"action"`
		Depends struct {
			ACL []string        `json:"acl"`
			UCI map[string]bool `json:"uci"`
		} `json:"depends"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "root/usr/share/luci/menu.d/luci-app-lanmesh.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &menu); err != nil {
		t.Fatalf("menu JSON: %v", err)
	}
	top, ok := menu["admin/vpn/lanmesh"]
	if !ok || len(top.Depends.ACL) != 1 || top.Depends.ACL[0] != "luci-app-lanmesh" || !top.Depends.UCI["lanmesh"] {
		t.Errorf("menu entry admin/vpn/lanmesh = %+v, want it to depend on ACL luci-app-lanmesh and UCI lanmesh", top)
	}
	for path, e := range menu {
		if e.Title == "" {
			t.Errorf("menu %s has no title", path)
		}
		switch e.Action.Type {
		case "view":
			if _, err := os.Stat(filepath.Join(dir, "htdocs/luci-static/resources/view", e.Action.Path+".js")); err != nil {
				t.Errorf("menu %s names view %s: %v", path, e.Action.Path, err)
			}
		case "alias":
			if _, ok := menu[e.Action.Path]; !ok {
				t.Errorf("menu %s aliases missing entry %s", path, e.Action.Path)
			}
		default:
			t.Errorf("menu %s: action type %q", path, e.Action.Type)
		}
	}

	aclPath := filepath.Join(dir, "root/usr/share/rpcd/acl.d/luci-app-lanmesh.json")
	b, err = os.ReadFile(aclPath)
	if err != nil {
		t.Fatal(err)
	}
	var acl aclFile
	if err := json.Unmarshal(b, &acl); err != nil {
		t.Fatalf("ACL JSON: %v", err)
	}
	g, ok := acl["luci-app-lanmesh"]
	if !ok || len(acl) != 1 || g.Description == "" {
		t.Fatalf("ACL groups %v: want exactly luci-app-lanmesh with a description", acl)
	}
	for _, list := range [][]string{g.Read.UCI, g.Write.UCI} {
		if len(list) != 1 || list[0] != "lanmesh" {
			t.Errorf("ACL UCI access %v, want only lanmesh", list)
		}
	}
	cmds, err := LuCIACLCommands(filepath.Join(repoRoot(t), "firmware", "openwrt"))
	if err != nil || len(cmds) == 0 {
		t.Fatalf("ACL commands %v %v", cmds, err)
	}
	for _, c := range cmds {
		joined := strings.Join(c, " ")
		if c[0] != "/usr/sbin/lanmesh" || strings.ContainsAny(joined, "*;|&$`") {
			t.Errorf("ACL allows %q: only exact /usr/sbin/lanmesh commands", joined)
		}
	}
	if len(g.Write.File) != 0 {
		t.Errorf("ACL grants file writes: %v", g.Write.File)
	}
}
