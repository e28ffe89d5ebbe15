package opkg

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// binDir returns a bin directory holding the router cross builds: make
// test's (LANMESH_BIN_DIR, filled by make build-cross) or, run alone, one
// this test builds.
func binDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("LANMESH_BIN_DIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "linux_mipsle", "lanmesh")); err == nil {
			return d
		}
	}
	d := t.TempDir()
	root := repoRoot(t)
	for _, p := range []struct{ dir, goarch, variant string }{
		{"linux_mipsle", "mipsle", "softfloat"}, {"linux_mips", "mips", "softfloat"},
		{"linux_arm", "arm", "7"}, {"linux_arm64", "arm64", ""}, {"linux_amd64", "amd64", ""},
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(d, p.dir, "lanmesh"), "./cmd/lanmesh")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+p.goarch)
		switch p.goarch {
		case "mips", "mipsle":
			cmd.Env = append(cmd.Env, "GOMIPS="+p.variant)
		case "arm":
			cmd.Env = append(cmd.Env, "GOARM="+p.variant)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cross build %s: %v\n%s", p.dir, err, out)
		}
	}
	return d
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

type pkgFile struct {
	mode     int64
	uid, gid int
	data     []byte
}

// unpack reads an .ipk the way opkg does: a gzipped tar of debian-binary,
// control.tar.gz and data.tar.gz.
func unpack(t *testing.T, path string) (order []string, control, data map[string]pkgFile) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	outer, err := readTGZ(b)
	if err != nil {
		t.Fatalf("%s: not a gzipped tar: %v", path, err)
	}
	control, data = map[string]pkgFile{}, map[string]pkgFile{}
	for _, e := range outer {
		order = append(order, strings.TrimPrefix(e.name, "./"))
		var into map[string]pkgFile
		switch strings.TrimPrefix(e.name, "./") {
		case "control.tar.gz":
			into = control
		case "data.tar.gz":
			into = data
		default:
			continue
		}
		inner, err := readTGZ(e.data)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, e.name, err)
		}
		for _, f := range inner {
			if f.hdr.Typeflag != 0 && f.hdr.Typeflag != '0' {
				continue
			}
			into["/"+strings.TrimPrefix(strings.TrimPrefix(f.name, "./"), "/")] = pkgFile{f.hdr.Mode, f.hdr.Uid, f.hdr.Gid, f.data}
		}
		if len(order) == 1 && string(e.data) != "2.0\n" {
			t.Errorf("%s: debian-binary = %q", path, e.data)
		}
	}
	return order, control, data
}

func field(control, name string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: (.*)$`).FindStringSubmatch(control)
	if m == nil {
		return ""
	}
	return m[1]
}

// wantELF is what the binary in each architecture's package must be.
var wantELF = map[string]struct {
	machine elf.Machine
	order   binary.ByteOrder
	class   elf.Class
}{
	"mipsel_24kc":              {elf.EM_MIPS, binary.LittleEndian, elf.ELFCLASS32},
	"mips_24kc":                {elf.EM_MIPS, binary.BigEndian, elf.ELFCLASS32},
	"arm_cortex-a7_neon-vfpv4": {elf.EM_ARM, binary.LittleEndian, elf.ELFCLASS32},
	"aarch64_cortex-a53":       {elf.EM_AARCH64, binary.LittleEndian, elf.ELFCLASS64},
	"x86_64":                   {elf.EM_X86_64, binary.LittleEndian, elf.ELFCLASS64},
}

func TestPackages(t *testing.T) {
	shellcheck := testenv.RequireTool(t, "shellcheck", "shellcheck")
	bins := binDir(t)
	out := t.TempDir()
	paths, err := Build(Options{Feed: filepath.Join(repoRoot(t), "firmware", "openwrt"), BinDir: bins, OutDir: out, Version: "0.1.0", Release: "1", MTime: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range paths {
		base := filepath.Base(p)
		m := regexp.MustCompile(`^(lanmesh|lanmesh-coord|luci-app-lanmesh)_0\.1\.0-1_(.+)\.ipk$`).FindStringSubmatch(base)
		if m == nil {
			t.Errorf("unexpected package name %s", base)
			continue
		}
		name, arch := m[1], m[2]
		seen[name+"/"+arch] = true
		t.Run(name+"_"+arch, func(t *testing.T) {
			order, control, data := unpack(t, p)
			if strings.Join(order, ",") != "debian-binary,control.tar.gz,data.tar.gz" {
				t.Errorf("outer members %v, want debian-binary, control.tar.gz, data.tar.gz", order)
			}
			c := string(control["/control"].data)
			for k, want := range map[string]string{"Package": name, "Version": "0.1.0-1", "Architecture": arch, "Section": "net"} {
				if got := field(c, k); got != want {
					t.Errorf("control %s = %q, want %q\n%s", k, got, want, c)
				}
			}
			for _, k := range []string{"Maintainer", "Description", "License", "Depends"} {
				if field(c, k) == "" {
					t.Errorf("control has no %s:\n%s", k, c)
				}
			}
			var size int64
			for _, f := range data {
				size += int64(len(f.data))
			}
			if got := field(c, "Installed-Size"); got != strconv.FormatInt(size, 10) {
				t.Errorf("Installed-Size %s, want %d (bytes, as OpenWrt writes it)", got, size)
			}
			for _, s := range []string{"/postinst", "/prerm"} {
				f, ok := control[s]
				if !ok || f.mode&0o777 != 0o755 {
					t.Errorf("%s missing or mode %o", s, f.mode)
					continue
				}
				shellcheckOK(t, shellcheck, s, f.data)
			}
			for path, f := range data {
				if f.uid != 0 || f.gid != 0 {
					t.Errorf("%s owned by %d:%d, want root", path, f.uid, f.gid)
				}
				want := int64(0o644)
				switch {
				case strings.HasPrefix(path, "/usr/sbin/"), strings.HasPrefix(path, "/etc/init.d/"), strings.HasPrefix(path, "/etc/uci-defaults/"):
					want = 0o755
					if !strings.HasPrefix(path, "/usr/sbin/") {
						shellcheckOK(t, shellcheck, path, f.data)
					}
				case strings.HasPrefix(path, "/etc/config/"):
					want = 0o600
				}
				if f.mode&0o7777 != want {
					t.Errorf("%s mode %o, want %o", path, f.mode&0o7777, want)
				}
			}
			switch name {
			case "lanmesh":
				if got := string(control["/conffiles"].data); got != "/etc/config/lanmesh\n" {
					t.Errorf("conffiles %q", got)
				}
				if !strings.Contains(field(c, "Depends"), "kmod-nft-core") {
					t.Errorf("Depends %q lacks kmod-nft-core", field(c, "Depends"))
				}
				checkELF(t, arch, data["/usr/sbin/lanmesh"].data)
				for _, f := range []string{"/etc/init.d/lanmesh", "/etc/config/lanmesh", "/etc/uci-defaults/90-lanmesh", "/lib/upgrade/keep.d/lanmesh"} {
					if _, ok := data[f]; !ok {
						t.Errorf("missing %s", f)
					}
				}
			case "lanmesh-coord":
				checkELF(t, arch, data["/usr/sbin/lanmesh-coord"].data)
			case "luci-app-lanmesh":
				if arch != "all" {
					t.Errorf("luci-app-lanmesh arch %s, want all", arch)
				}
				if len(data) != 4 {
					t.Errorf("luci-app-lanmesh has %d files, want 4", len(data))
				}
			}
		})
	}
	for a := range wantELF {
		if !seen["lanmesh/"+a] {
			t.Errorf("no lanmesh package for %s", a)
		}
	}
	if !seen["luci-app-lanmesh/all"] {
		t.Error("no luci-app-lanmesh package")
	}
}

func shellcheckOK(t *testing.T, shellcheck, name string, script []byte) {
	t.Helper()
	// OpenWrt runs these under busybox ash; shellcheck 0.9 has no busybox
	// dialect, and dash is the closest (POSIX plus local).
	cmd := exec.Command(shellcheck, "-s", "dash", "-")
	cmd.Stdin = bytes.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("shellcheck %s: %v\n%s", name, err, out)
	}
}

func checkELF(t *testing.T, arch string, bin []byte) {
	t.Helper()
	want, ok := wantELF[arch]
	if !ok {
		t.Fatalf("no ELF expectation for %s", arch)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("binary for %s is not ELF: %v", arch, err)
	}
	if f.Machine != want.machine || f.ByteOrder != want.order || f.Class != want.class || f.Type != elf.ET_EXEC {
		t.Errorf("binary for %s is %v %v %v %v, want %v %v %v executable", arch, f.Machine, f.ByteOrder, f.Class, f.Type, want.machine, want.order, want.class)
	}
}
