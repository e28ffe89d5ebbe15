package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lanmesh.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, err := Load(Sources{})
	if err != nil {
		t.Fatal(err)
	}
	if *c != Defaults() {
		t.Fatalf("Load() = %+v, want defaults %+v", *c, Defaults())
	}
	if c.ListenPort != 41641 || c.MTU != 1420 || c.MemoryLimitMiB != 38 || !c.Offloads.UDPGRO {
		t.Fatalf("wrong defaults: %+v", c)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "tun_name: filetun\nmtu: 1380\nlisten_port: 1000\noffloads:\n  udp_gso: false\n  tun: false\n")
	tests := []struct {
		name  string
		env   []string
		flags []Flag
		check func(*Config) bool
	}{
		{"file over default", nil, nil, func(c *Config) bool {
			return c.TUNName == "filetun" && c.MTU == 1380 && !c.Offloads.UDPGSO && !c.Offloads.TUN && c.Offloads.UDPGRO
		}},
		{"env over file", []string{"LANMESH_TUN_NAME=envtun", "LANMESH_OFFLOADS_UDP_GSO=true", "PATH=/bin", "LANMESH_AUTH_KEY=x"}, nil, func(c *Config) bool {
			return c.TUNName == "envtun" && c.Offloads.UDPGSO && c.MTU == 1380
		}},
		{"flag over env", []string{"LANMESH_TUN_NAME=envtun", "LANMESH_LISTEN_PORT=2000"}, []Flag{{Key: "tun_name", Name: "--tun", Value: "flagtun"}}, func(c *Config) bool {
			return c.TUNName == "flagtun" && c.ListenPort == 2000
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(Sources{File: file, Env: tt.env, Flags: tt.flags})
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Fatalf("wrong result %+v", c)
			}
		})
	}
}

func TestErrorsNameKeyAndSource(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		env   []string
		flags []Flag
		want  []string // substrings; "FILE" is the file's path
	}{
		{"bad tun in file", "tun_name: \"a b\"\n", nil, nil, []string{`tun_name: "a b" is not a valid interface name`, "(from FILE)"}},
		{"unknown key", "tun_nmae: x\n", nil, nil, []string{"tun_nmae: unknown key", "FILE"}},
		{"unknown nested key", "offloads:\n  tso: true\n", nil, nil, []string{"offloads.tso: unknown key"}},
		{"wrong type in file", "mtu: big\n", nil, nil, []string{`mtu: "big" is not a number`, "FILE"}},
		{"bad yaml", "mtu: [1\n", nil, nil, []string{"not valid YAML", "FILE"}},
		{"env not a number", "", []string{"LANMESH_MTU=abc"}, nil, []string{`mtu: "abc" is not a number (from env LANMESH_MTU)`}},
		{"env range", "", []string{"LANMESH_LISTEN_PORT=70000"}, nil, []string{"listen_port: \"70000\" is not a UDP port", "from env LANMESH_LISTEN_PORT"}},
		{"flag bad tun", "", nil, []Flag{{Key: "tun_name", Name: "--tun", Value: "x/y"}}, []string{`tun_name: "x/y"`, "(from flag --tun)"}},
		{"bad log level", "log_level: loud\n", nil, nil, []string{"log_level: \"loud\" is not one of"}},
		{"bad bool env", "", []string{"LANMESH_OFFLOADS_TUN=maybe"}, nil, []string{"offloads.tun", "from env LANMESH_OFFLOADS_TUN"}},
		{"mtu too small", "mtu: 500\n", nil, nil, []string{"mtu: \"500\" is out of range"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := Sources{Env: tt.env, Flags: tt.flags}
			if tt.file != "" {
				src.File = writeFile(t, tt.file)
			}
			_, err := Load(src)
			if err == nil {
				t.Fatal("Load accepted bad config")
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "FILE", src.File)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(Sources{File: filepath.Join(t.TempDir(), "nope.yaml")})
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzLoadYAML(f *testing.F) {
	f.Add([]byte("tun_name: x\nmtu: 1400\noffloads:\n  tun: false\n"))
	f.Add([]byte("a: {b: [1, 2]}\n"))
	f.Add([]byte("listen_port: 99999999999999999999\n"))
	f.Add([]byte("? [a]\n: b\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := load(Sources{File: "fuzz.yaml"}, b, nil)
		if err != nil {
			return
		}
		if c.validate(map[string]string{}) != nil {
			t.Fatal("Load returned a config that does not validate")
		}
	})
}

// configs/agent.yaml documents every key with its default: loading it
// must give exactly the defaults, and it must name every key.
func TestExampleConfigIsDefaults(t *testing.T) {
	path := filepath.Join("..", "..", "configs", "agent.yaml")
	c, err := Load(Sources{File: path})
	if err != nil {
		t.Fatal(err)
	}
	if *c != Defaults() {
		t.Fatalf("configs/agent.yaml = %+v, want the defaults %+v", *c, Defaults())
	}
	b, _ := os.ReadFile(path)
	layer, err := fileLayer(path, b, schemaKeys())
	if err != nil {
		t.Fatal(err)
	}
	for key := range schemaKeys() {
		if _, ok := layer[key]; !ok {
			t.Errorf("configs/agent.yaml does not show key %s", key)
		}
	}
}

func TestDNSKeys(t *testing.T) {
	d := Defaults().DNS
	if !d.Enabled || d.Listen != "127.0.0.1:53535" || d.DnsmasqConf != "" || d.Upstreams != "" || d.PublishLeases || d.LeasesFile != "/tmp/dhcp.leases" {
		t.Fatalf("dns defaults = %+v", d)
	}
	c, err := Load(Sources{Env: []string{"LANMESH_DNS_LISTEN=127.0.0.1:0", "LANMESH_DNS_UPSTREAMS=1.1.1.1, [2001:db8::1]:5353"}})
	if err != nil || c.DNS.Listen != "127.0.0.1:0" {
		t.Fatalf("env dns = %+v, %v", c, err)
	}
	ups, err := ParseUpstreams(c.DNS.Upstreams)
	if err != nil || len(ups) != 2 || ups[0].String() != "1.1.1.1:53" || ups[1].String() != "[2001:db8::1]:5353" {
		t.Fatalf("upstreams = %v, %v", ups, err)
	}
	for _, bad := range []struct{ file, want string }{
		{"dns:\n  listen: localhost\n", "dns.listen"},
		{"dns:\n  upstreams: 1.1.1.1,resolver\n", "dns.upstreams"},
		{"dns:\n  publish_leases: true\n  leases_file: \"\"\n", "dns.leases_file"},
		{"dns:\n  enabled: yes please\n", "dns.enabled"},
	} {
		_, err := Load(Sources{File: writeFile(t, bad.file)})
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: err = %v, want it to name %s", bad.file, err, bad.want)
		}
	}
}

// Every field of Config is in bind (and so in the schema), under the key
// its koanf tag names: a field added without a bind entry would never be
// set from any source.
func TestBindCoversEveryField(t *testing.T) {
	want := map[string]bool{}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			key := prefix + f.Tag.Get("koanf")
			if f.Type.Kind() == reflect.Struct {
				walk(key+".", f.Type)
				continue
			}
			want[key] = true
		}
	}
	walk("", reflect.TypeOf(Config{}))
	var c Config
	got := bind(&c)
	for key := range want {
		if _, ok := got[key]; !ok {
			t.Errorf("field with key %q is not in bind", key)
		}
	}
	for key, p := range got {
		if !want[key] {
			t.Errorf("bind has %q, which is no field's koanf tag", key)
		}
		switch p.(type) {
		case *string, *int, *bool:
		default:
			t.Errorf("bind %q: unsupported type %T", key, p)
		}
	}
}
