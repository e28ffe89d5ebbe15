package config

import (
	"strings"
	"testing"
)

// The web page listens on a LAN address only unless told otherwise, so it
// never shows up on WAN or the mesh by accident (S5).
func TestWebListen(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string // "" accepts
	}{
		{[]string{"LANMESH_WEB_ENABLED=false"}, ""},
		{[]string{"LANMESH_WEB_ENABLED=true"}, "web.listen"},
		{[]string{"LANMESH_WEB_ENABLED=true", "LANMESH_WEB_LISTEN=192.168.1.1:8081"}, ""},
		{[]string{"LANMESH_WEB_ENABLED=true", "LANMESH_WEB_LISTEN=198.19.2.1:8081"}, ""},
		{[]string{"LANMESH_WEB_ENABLED=true", "LANMESH_WEB_LISTEN=[fd00::1]:8081"}, ""},
		{[]string{"LANMESH_WEB_ENABLED=true", "LANMESH_WEB_LISTEN=192.168.1.1"}, "web.listen"},
		{[]string{"LANMESH_WEB_ENABLED=true", "LANMESH_WEB_LISTEN=0.0.0.0:8081"}, "not a LAN address"},
		{[]string{"LANMESH_WEB_ENABLED=true", "LANMESH_WEB_LISTEN=100.64.0.1:8081"}, "not a LAN address"},
		{[]string{"LANMESH_WEB_ENABLED=true", "LANMESH_WEB_LISTEN=8.8.8.8:8081"}, "not a LAN address"},
		{[]string{"LANMESH_WEB_ENABLED=true", "LANMESH_WEB_LISTEN=8.8.8.8:8081", "LANMESH_WEB_ALLOW_ANY=true"}, ""},
		{[]string{"LANMESH_WEB_HOSTS=router.lan,a/b"}, "web.hosts"},
	} {
		_, err := Load(Sources{Env: tc.env})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: err = %v, want %q", tc.env, err, tc.want)
		}
	}
	c, err := Load(Sources{Env: []string{"LANMESH_STATE_DIR=/x"}})
	if err != nil || c.WebTokenFile() != "/x/web.token" {
		t.Errorf("token file = %q, %v", c.WebTokenFile(), err)
	}
}
