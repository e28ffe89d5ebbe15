package uci

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const setSample = `# lanmesh
config agent 'main'
	option enabled '1'

config join 'join'
	# routes
	list advertise_routes 'lan'
	option accept_routes '0'
	option hostname ''

config dns 'dns'
	option enabled '1'
`

func TestSet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lanmesh")
	if err := os.WriteFile(path, []byte(setSample), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Set(path, "join", "advertise_routes", []string{"198.18.9.0/24", "198.18.10.0/24"}, true); err != nil {
		t.Fatal(err)
	}
	if err := Set(path, "join", "accept_routes", []string{"1"}, false); err != nil {
		t.Fatal(err)
	}
	if err := Set(path, "join", "advertise_exit_node", []string{"1"}, false); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	f, err := Parse(path, b)
	if err != nil {
		t.Fatalf("result does not parse: %v\n%s", err, b)
	}
	j := f.Section("join")
	if got := j.Lists["advertise_routes"]; !reflect.DeepEqual(got, []string{"198.18.9.0/24", "198.18.10.0/24"}) {
		t.Errorf("advertise_routes = %v\n%s", got, b)
	}
	if j.Options["accept_routes"] != "1" || j.Options["advertise_exit_node"] != "1" {
		t.Errorf("join = %v\n%s", j.Options, b)
	}
	if f.Section("dns").Options["enabled"] != "1" || !strings.Contains(string(b), "# routes") {
		t.Errorf("other lines not kept:\n%s", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600 kept", fi.Mode().Perm())
	}
	// No values removes a list.
	if err := Set(path, "join", "advertise_routes", nil, true); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	f, _ = Parse(path, b)
	if _, ok := f.Section("join").Lists["advertise_routes"]; ok {
		t.Errorf("advertise_routes not removed:\n%s", b)
	}
}

func TestSetRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lanmesh")
	if err := os.WriteFile(path, []byte(setSample), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"no section":   Set(path, "nosuch", "x", []string{"1"}, false),
		"bad key":      Set(path, "join", "a-b", []string{"1"}, false),
		"quote":        Set(path, "join", "hostname", []string{"a'b"}, false),
		"newline":      Set(path, "join", "hostname", []string{"a\nconfig x"}, false),
		"two options":  Set(path, "join", "hostname", []string{"a", "b"}, false),
		"missing file": Set(path+".no", "join", "hostname", []string{"a"}, false),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != setSample {
		t.Errorf("refused sets changed the file:\n%s", b)
	}
}
