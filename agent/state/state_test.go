package state

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func joined() *State {
	s := New()
	s.NodeID = 7
	s.Name = "router-a"
	s.Addresses = []netip.Prefix{netip.MustParsePrefix("100.64.0.1/32"), netip.MustParsePrefix("fd7a:115c:a1e0::1/128")}
	s.LoginServer = "https://198.18.0.2"
	s.Prefs = Prefs{WantRunning: true, AdvertiseRoutes: []netip.Prefix{netip.MustParsePrefix("198.19.1.0/24")}, SNATSubnetRoutes: true}
	return s
}

func TestStoreLoadRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := joined()
	wrote, err := Store(dir, s)
	if err != nil || !wrote {
		t.Fatalf("Store = %v, %v", wrote, err)
	}
	fi, err := os.Stat(Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.MachineKey != s.MachineKey || got.NodeKey != s.NodeKey || got.NodeID != 7 || !got.Prefs.Equal(s.Prefs) || len(got.Addresses) != 2 {
		t.Fatalf("round trip lost data: %+v", got)
	}
	if !got.Joined() {
		t.Fatal("Joined() = false")
	}
	// No temp files are left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("dir holds %d entries, want only state.json", len(ents))
	}
}

// Flash wear: an unchanged state must not be rewritten.
func TestStoreSkipsUnchanged(t *testing.T) {
	dir := t.TempDir()
	s := joined()
	if _, err := Store(dir, s); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(Path(dir), old, old)
	wrote, err := Store(dir, s)
	if err != nil || wrote {
		t.Fatalf("second Store = %v, %v; want no write", wrote, err)
	}
	fi, _ := os.Stat(Path(dir))
	if !fi.ModTime().Equal(old) {
		t.Fatal("file was rewritten")
	}
	s.Prefs.AcceptRoutes = true
	if wrote, err := Store(dir, s); err != nil || !wrote {
		t.Fatalf("changed Store = %v, %v; want a write", wrote, err)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(t.TempDir())
	if !errors.Is(err, ErrNotExist) {
		t.Fatalf("Load of empty dir = %v, want ErrNotExist", err)
	}
}

// S14: a corrupt or partial state file must stop the agent with an error
// that names the file and the fix, never be treated as "never joined".
func TestLoadCorruptStopsS14(t *testing.T) {
	good := joined()
	goodDir := t.TempDir()
	Store(goodDir, good)
	goodBytes, _ := os.ReadFile(Path(goodDir))
	cases := map[string]string{
		"empty":       "",
		"truncated":   string(goodBytes[:len(goodBytes)/2]),
		"not json":    "hello",
		"no keys":     `{"version":1,"node_id":3,"addresses":["100.64.0.3/32"],"prefs":{}}`,
		"no node key": strings.Replace(string(goodBytes), `"node_key"`, `"old_node_key"`, 1),
		"bad key":     strings.Replace(string(goodBytes), `"machine_key": "`, `"machine_key": "!!`, 1),
		"bad version": strings.Replace(string(goodBytes), `"version": 1`, `"version": 9`, 1),
		"trailing":    string(goodBytes) + "{}",
		"ids no addr": `{"version":1,"machine_key":"` + mk(good) + `","node_key":"` + good.NodeKey.Base64() + `","node_id":3,"prefs":{}}`,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(Path(dir), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if err == nil {
				t.Fatal("Load accepted a corrupt state file")
			}
			if errors.Is(err, ErrNotExist) {
				t.Fatal("corrupt state treated as never joined")
			}
			msg := err.Error()
			if !strings.Contains(msg, Path(dir)) || !strings.Contains(msg, "delete it to join as a new node") {
				t.Fatalf("error does not name the file and the fix: %s", msg)
			}
			if strings.Contains(msg, good.NodeKey.Base64()) {
				t.Fatal("error leaks the node key")
			}
		})
	}
}

func mk(s *State) string { b, _ := s.MachineKey.MarshalText(); return string(b) }

func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should be: unreadable, not missing.
	if err := os.Mkdir(Path(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	if err == nil || errors.Is(err, ErrNotExist) {
		t.Fatalf("Load = %v, want a corrupt-state error", err)
	}
}

func FuzzParse(f *testing.F) {
	s := joined()
	dir := f.TempDir()
	Store(dir, s)
	b, _ := os.ReadFile(Path(dir))
	f.Add(b)
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		if s.MachineKey.IsZero() || s.NodeKey.IsZero() {
			t.Fatal("Parse accepted a state without keys")
		}
	})
}
