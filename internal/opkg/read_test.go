package opkg

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Only builds just the named architectures, and Read gives back what
// went in: control fields, conffiles, scripts, files with their modes.
func TestOnlyAndRead(t *testing.T) {
	bins := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bins, "linux_mipsle"), 0o755); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(t.TempDir(), "lanmesh")
	if err := os.WriteFile(real, []byte("not really a binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A symlinked build is packaged as the file it points at.
	if err := os.Symlink(real, filepath.Join(bins, "linux_mipsle", "lanmesh")); err != nil {
		t.Fatal(err)
	}
	o := Options{Feed: filepath.Join(repoRoot(t), "firmware", "openwrt"), BinDir: bins, OutDir: t.TempDir(),
		Version: "1.2.3", Release: "4", MTime: time.Unix(1700000000, 0), Only: []string{"mipsel_24kc"}}
	paths, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 || filepath.Base(paths[0]) != "lanmesh_1.2.3-4_mipsel_24kc.ipk" {
		t.Fatalf("Only mipsel_24kc built %v", paths)
	}
	p, err := Read(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if p.Field("Package") != "lanmesh" || p.Field("Architecture") != "mipsel_24kc" || p.Field("Version") != "1.2.3-4" {
		t.Errorf("control:\n%s", p.Control)
	}
	if strings.Join(p.Conffiles, " ") != "/etc/config/lanmesh" {
		t.Errorf("conffiles %v", p.Conffiles)
	}
	if _, ok := p.Scripts["postinst"]; !ok {
		t.Errorf("no postinst: %v", p.Scripts)
	}
	if f := p.Files["/usr/sbin/lanmesh"]; string(f.Data) != "not really a binary" || f.Mode != 0o755 {
		t.Errorf("/usr/sbin/lanmesh = %q mode %v", f.Data, f.Mode)
	}
	if f := p.Files["/etc/config/lanmesh"]; f.Mode != 0o600 || !strings.Contains(string(f.Data), "config join 'join'") {
		t.Errorf("/etc/config/lanmesh mode %v", f.Mode)
	}

	o.Only = []string{"mipsel"}
	if _, err := Build(o); err == nil || !strings.Contains(err.Error(), "mipsel_24kc") {
		t.Errorf("unknown architecture: err %v, want one naming the known ones", err)
	}
	if _, err := Read(filepath.Join(o.Feed, "lanmesh", "files", "lanmesh.config")); err == nil {
		t.Error("Read accepted a file that is no .ipk")
	}
}

// FuzzParse: no input makes Parse panic, and what it accepts has a
// control file.
func FuzzParse(f *testing.F) {
	bins := f.TempDir()
	if err := os.MkdirAll(filepath.Join(bins, "linux_mipsle"), 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(bins, "linux_mipsle", "lanmesh"), []byte("bin"), 0o755)
		_, file, _, _ := runtime.Caller(0)
		paths, err := Build(Options{Feed: filepath.Join(filepath.Dir(file), "..", "..", "firmware", "openwrt"), BinDir: bins,
			OutDir: f.TempDir(), Version: "1", Release: "1", Only: []string{"mipsel_24kc"}})
		if err == nil {
			if b, err := os.ReadFile(paths[0]); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse("fuzz.ipk", b)
		if err == nil && p.Control == "" {
			t.Fatal("accepted a package without a control file")
		}
	})
}
