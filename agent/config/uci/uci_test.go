package uci

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

const sample = `
# /etc/config/lanmesh
package lanmesh

config agent 'main'
	option enabled '1'
	option login_server "https://coord.example.net"   # trailing comment
	list advertise_routes 'lan'
	list advertise_routes '198.18.7.0/24'
	option hostname 'router-a'
	option quoted "say \"hi\""

config agent 'main'
	option accept_routes 1

config dns
	option enabled 0
`

func TestParse(t *testing.T) {
	f, err := Parse("/etc/config/lanmesh", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if f.Package != "lanmesh" || len(f.Sections) != 2 {
		t.Fatalf("package %q sections %d, want lanmesh 2", f.Package, len(f.Sections))
	}
	m := f.Section("main")
	if m == nil || m.Type != "agent" || m.Line != 5 {
		t.Fatalf("main = %+v", m)
	}
	want := map[string]string{
		"enabled": "1", "login_server": "https://coord.example.net",
		"hostname": "router-a", "quoted": `say "hi"`, "accept_routes": "1",
	}
	for k, v := range want {
		if m.Options[k] != v {
			t.Errorf("option %s = %q, want %q", k, m.Options[k], v)
		}
	}
	if got := m.Values("advertise_routes"); !reflect.DeepEqual(got, []string{"lan", "198.18.7.0/24"}) {
		t.Errorf("advertise_routes = %q", got)
	}
	if m.Lines["accept_routes"] != 14 {
		t.Errorf("accept_routes line %d, want 14", m.Lines["accept_routes"])
	}
	if d := f.OfType("dns"); len(d) != 1 || d[0].Name != "" || d[0].Options["enabled"] != "0" {
		t.Errorf("anonymous dns section = %+v", d)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"option x 1", "f:1: option before any config section"},
		{"config a\n\toption x", "f:2: want: option NAME VALUE"},
		{"config a\n\toption x 'unterminated", "f:2: unterminated ' quote"},
		{"config a b c d", "f:1: want: config TYPE [NAME]"},
		{"config a 'b-c'", `f:1: section name "b-c"`},
		{"config a b\nconfig c b", `f:2: section "b" was type "a" at line 1, now "c"`},
		{"frobnicate", `f:1: unknown keyword "frobnicate"`},
		{"config a\n\toption x \"a\x01\"", "f:2: "},
	} {
		_, err := Parse("f", []byte(tt.in))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want prefix %q", tt.in, err, tt.want)
		}
	}
	if _, err := Parse("f", make([]byte, MaxFileBytes+1)); err == nil {
		t.Error("oversized file accepted")
	}
}

const network = `
config interface 'loopback'
	option device 'lo'
	option proto 'static'
	option ipaddr '127.0.0.1'
	option netmask '255.0.0.0'

config interface 'lan'
	option device 'br-lan'
	option proto 'static'
	option ipaddr '198.18.7.1'
	option netmask '255.255.255.0'
	option ip6assign '60'

config interface 'lan2'
	option proto 'static'
	list ipaddr '198.18.8.1/24'
	list ipaddr '198.18.9.1/25'
	option ip6addr '2001:db8:1::1/64'

config interface 'wan'
	option device 'eth1'
	option proto 'dhcp'
`

func TestInterfacePrefixes(t *testing.T) {
	f, err := Parse("/etc/config/network", []byte(network))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		want []string
		err  string
	}{
		{name: "lan", want: []string{"198.18.7.0/24"}},
		{name: "lan2", want: []string{"198.18.8.0/24", "198.18.9.0/25", "2001:db8:1::/64"}},
		{name: "wan", err: `/etc/config/network:23: interface "wan" uses proto "dhcp"`},
		{name: "guest", err: `no interface "guest"`},
	} {
		got, err := InterfacePrefixes(f, tt.name)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var want []netip.Prefix
		for _, s := range tt.want {
			want = append(want, netip.MustParsePrefix(s))
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", tt.name, got, want)
		}
	}
}

func TestMaskBits(t *testing.T) {
	for m, want := range map[string]int{"255.255.255.0": 24, "255.255.254.0": 23, "24": 24, "0.0.0.0": 0, "255.0.255.0": -1, "33": -1, "x": -1} {
		got, err := maskBits(m)
		if want < 0 {
			if err == nil {
				t.Errorf("maskBits(%q) accepted", m)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("maskBits(%q) = %d, %v; want %d", m, got, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte(network))
	f.Add([]byte("config a\n\toption x \"a\\\"b\" # c\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse("fuzz", b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz") {
				t.Fatalf("error without file name: %v", err)
			}
			return
		}
		for _, s := range file.Sections {
			if s.Type == "" {
				t.Fatal("section without type")
			}
			if s.Type == "interface" && s.Name != "" {
				_, _ = InterfacePrefixes(file, s.Name)
			}
		}
	})
}
