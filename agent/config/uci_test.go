package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const testUCI = `
config agent 'main'
	option enabled '1'
	option tun_name 'ucitun'
	option mtu '1400'
	option network_config '%NET%'
	option cache_dir '/tmp/lanmesh'
	option backend 'userspace'

config join 'join'
	option login_server 'https://coord.example.net'
	option auth_key_file '/etc/lanmesh/authkey'
	list advertise_routes 'lan'
	list advertise_routes '198.18.9.0/24'
	option accept_routes 'yes'
	option exit_node 'router-b'
	option exit_node_allow_lan_access '1'

config dns 'dns'
	option publish_leases '1'
	option upstreams '198.18.0.53'

config offloads
	option udp_gso 'off'
`

const testNetwork = `
config interface 'lan'
	option proto 'static'
	option ipaddr '198.18.7.1'
	option netmask '255.255.255.0'
`

func writeUCI(t *testing.T) (uciPath string) {
	t.Helper()
	dir := t.TempDir()
	net := filepath.Join(dir, "network")
	if err := os.WriteFile(net, []byte(testNetwork), 0o644); err != nil {
		t.Fatal(err)
	}
	uciPath = filepath.Join(dir, "lanmesh")
	if err := os.WriteFile(uciPath, []byte(strings.ReplaceAll(testUCI, "%NET%", net)), 0o644); err != nil {
		t.Fatal(err)
	}
	return uciPath
}

// The order is defaults < YAML < UCI < env < flags (docs/design.md).
func TestUCIPrecedence(t *testing.T) {
	u := writeUCI(t)
	yaml := writeFile(t, "tun_name: yamltun\nmtu: 1300\nlisten_port: 1000\n")
	c, err := Load(Sources{File: yaml, UCI: u, Env: []string{"LANMESH_MTU=1380"}, Flags: []Flag{{Key: "listen_port", Name: "--port", Value: "2000"}}})
	if err != nil {
		t.Fatal(err)
	}
	if c.TUNName != "ucitun" || c.MTU != 1380 || c.ListenPort != 2000 {
		t.Errorf("tun %q mtu %d port %d; want ucitun (UCI over YAML), 1380 (env over UCI), 2000 (flag over all)", c.TUNName, c.MTU, c.ListenPort)
	}
	if c.Offloads.UDPGSO || !c.Offloads.UDPGRO || !c.DNS.PublishLeases || c.DNS.Upstreams != "198.18.0.53" {
		t.Errorf("sections not mapped: %+v %+v", c.Offloads, c.DNS)
	}
	want := Join{LoginServer: "https://coord.example.net", AuthKeyFile: "/etc/lanmesh/authkey", AdvertiseRoutes: "lan,198.18.9.0/24", AcceptRoutes: true, SNATSubnetRoutes: true,
		ExitNode: "router-b", ExitNodeAllowLANAccess: true}
	if c.Join != want {
		t.Errorf("join = %+v, want %+v", c.Join, want)
	}
	if c.Backend != "userspace" || c.NetmapCacheDir() != "/tmp/lanmesh" || c.StateDir != Defaults().StateDir {
		t.Errorf("backend %q, netmap cache in %q (state_dir %q); want userspace, /tmp/lanmesh", c.Backend, c.NetmapCacheDir(), c.StateDir)
	}
	routes, err := c.AdvertiseRoutes()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(routes, []netip.Prefix{netip.MustParsePrefix("198.18.7.0/24"), netip.MustParsePrefix("198.18.9.0/24")}) {
		t.Errorf("routes = %v", routes)
	}
}

func TestUCIErrors(t *testing.T) {
	for _, tt := range []struct{ body, want string }{
		{"config agent\n\toption tun_nme 'x'", `:2: unknown option "tun_nme" in section "agent"`},
		{"config dns\n\toption enabled 'maybe'", `dns.enabled: "maybe" is not a boolean (true or false) (from `},
		{"config agent\n\tlist mtu '1400'", `:2: mtu is a single value; use option, not list`},
		{"config agent\n\toption mtu 'x", `:2: unterminated ' quote`},
		{"config join\n\toption login_server 'http://x'", `join.login_server: "http://x" is not an https:// URL (from `},
		{"config join\n\toption advertise_routes 'guest'\nconfig agent\n\toption network_config '/nonexistent/network'", `names interface "guest", but the network config cannot be read`},
		{"config join\n\toption advertise_routes '198.18.7.1/33'", `is not a prefix like`},
		{"config agent\n\toption backend 'kernle'", `backend: "kernle" is not one of auto, kernel, userspace (from `},
		{"config join\n\toption exit_node 'router b'", `join.exit_node: "router b" is not a peer's name or mesh IP`},
		{"config join\n\toption exit_node 'router-b'\n\toption advertise_exit_node '1'", `a node that offers an exit node cannot use another`},
	} {
		p := filepath.Join(t.TempDir(), "lanmesh")
		if err := os.WriteFile(p, []byte(tt.body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(Sources{UCI: p})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err %v, want %q", tt.body, err, tt.want)
		}
	}
}

func FuzzUCILayer(f *testing.F) {
	f.Add([]byte(testUCI))
	f.Add([]byte("config dns\n\tlist upstreams '198.18.0.1'\n\tlist upstreams '[2001:db8::1]:53'\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := load(Sources{UCI: "fuzz"}, nil, b)
		if err != nil {
			return
		}
		if c.StateDir == "" || c.MTU < 1280 {
			t.Fatalf("validation let through %+v", c)
		}
	})
}

func TestRestartKeys(t *testing.T) {
	a, b := Defaults(), Defaults()
	b.Join.LoginServer = "https://x"
	b.MTU = 1300
	b.DNS.Listen = "127.0.0.1:1"
	if got := RestartKeys(&a, &b); !reflect.DeepEqual(got, []string{"dns.listen", "mtu"}) {
		t.Errorf("RestartKeys = %v", got)
	}
}
