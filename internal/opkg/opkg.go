package opkg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/goreleaser/nfpm/v2/ipk"
)

// Arch maps an OpenWrt package architecture to the directory of its Go
// cross build under the bin directory (bin/<os>_<arch>/).
type Arch struct {
	Name   string // OpenWrt: mipsel_24kc
	BinDir string // Go: linux_mipsle
}

// Arches are the targets make packages builds. Each OpenWrt name stands
// for a family: mipsel_24kc runs on every little-endian MIPS32 router the
// softfloat Go build supports, and so on.
var Arches = []Arch{
	{"mipsel_24kc", "linux_mipsle"},
	{"mips_24kc", "linux_mips"},
	{"arm_cortex-a7_neon-vfpv4", "linux_arm"},
	{"aarch64_cortex-a53", "linux_arm64"},
	{"x86_64", "linux_amd64"},
}

// Options say where the inputs are and where packages go.
type Options struct {
	Feed    string // firmware/openwrt
	BinDir  string // bin, holding <os>_<arch>/lanmesh and lanmesh-coord
	OutDir  string
	Version string // upstream version, e.g. 0.1.0
	Release string // package release, e.g. 1
	// MTime is stamped on every file, so builds are reproducible.
	MTime time.Time
	// Only, when not empty, limits the build to these OpenWrt
	// architectures (e.g. mipsel_24kc) and leaves out luci-app-lanmesh
	// unless it names "all": a test that boots one router needs one
	// package, not the whole feed.
	Only []string
}

func (o Options) wants(arch string) bool {
	if len(o.Only) == 0 {
		return true
	}
	for _, a := range o.Only {
		if a == arch {
			return true
		}
	}
	return false
}

// The maintainer scripts are the ones the OpenWrt SDK writes: they hand
// over to default_postinst/default_prerm of /lib/functions.sh, which run
// the package's uci-defaults, enable and start (or stop and disable) its
// init scripts, and do nothing when building an image (IPKG_INSTROOT).
const (
	postinst = `#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
# shellcheck source=/dev/null
. "${IPKG_INSTROOT}/lib/functions.sh"
default_postinst "$0" "$@"
`
	prerm = `#!/bin/sh
[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
# shellcheck source=/dev/null
. "${IPKG_INSTROOT}/lib/functions.sh"
default_prerm "$0" "$@"
`
)

// Scripts returns the maintainer scripts by name, for tests that check
// them with shellcheck.
func Scripts() map[string]string { return map[string]string{"postinst": postinst, "prerm": prerm} }

type file struct {
	src, dst string
	mode     os.FileMode
	conf     bool
}

type spec struct {
	name, arch, desc string
	depends          []string
	files            []file
}

// Build writes every package it can and returns their paths. A missing
// agent binary is an error; lanmesh-coord is packaged only for the
// architectures it builds for (modernc.org/sqlite has no MIPS port).
func Build(o Options) ([]string, error) {
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	var specs []spec
	f := func(p string) string { return filepath.Join(o.Feed, p) }
	for _, w := range o.Only {
		if w == "all" {
			continue
		}
		known := false
		for _, a := range Arches {
			known = known || a.Name == w
		}
		if !known {
			return nil, fmt.Errorf("architecture %q: not one of the packaged ones (%s)", w, archNames())
		}
	}
	for _, a := range Arches {
		if !o.wants(a.Name) {
			continue
		}
		bin := filepath.Join(o.BinDir, a.BinDir, "lanmesh")
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("package lanmesh for %s: %w (run make build-cross first)", a.Name, err)
		}
		specs = append(specs, spec{
			name: "lanmesh", arch: a.Name,
			desc:    "Join this router and its LAN to a private WireGuard mesh: agent and CLI.",
			depends: []string{"libc", "kmod-tun", "kmod-nft-core", "kmod-nft-nat", "ca-bundle"},
			files: []file{
				{bin, "/usr/sbin/lanmesh", 0o755, false},
				{f("lanmesh/files/lanmesh.init"), "/etc/init.d/lanmesh", 0o755, false},
				{f("lanmesh/files/lanmesh.config"), "/etc/config/lanmesh", 0o600, true},
				{f("lanmesh/files/lanmesh.uci-defaults"), "/etc/uci-defaults/90-lanmesh", 0o755, false},
				{f("lanmesh/files/lanmesh.keep"), "/lib/upgrade/keep.d/lanmesh", 0o644, false},
			},
		})
		coord := filepath.Join(o.BinDir, a.BinDir, "lanmesh-coord")
		if _, err := os.Stat(coord); err == nil {
			specs = append(specs, spec{
				name: "lanmesh-coord", arch: a.Name,
				desc:    "lanmesh coordination server with embedded relay and STUN, for a router with a public address.",
				depends: []string{"libc"},
				files: []file{
					{coord, "/usr/sbin/lanmesh-coord", 0o755, false},
					{f("lanmesh-coord/files/lanmesh-coord.init"), "/etc/init.d/lanmesh-coord", 0o755, false},
					{f("lanmesh-coord/files/lanmesh-coord.config"), "/etc/config/lanmesh-coord", 0o600, true},
					{f("lanmesh-coord/files/lanmesh-coord.keep"), "/lib/upgrade/keep.d/lanmesh-coord", 0o644, false},
				},
			})
		}
	}
	luci := "luci-app-lanmesh/"
	if o.wants("all") {
		specs = append(specs, spec{
			name: "luci-app-lanmesh", arch: "all",
			desc:    "LuCI support for lanmesh: settings and status views.",
			depends: []string{"libc", "luci-base", "lanmesh"},
			files: []file{
				{f(luci + "htdocs/luci-static/resources/view/lanmesh/settings.js"), "/www/luci-static/resources/view/lanmesh/settings.js", 0o644, false},
				{f(luci + "htdocs/luci-static/resources/view/lanmesh/status.js"), "/www/luci-static/resources/view/lanmesh/status.js", 0o644, false},
				{f(luci + "root/usr/share/luci/menu.d/luci-app-lanmesh.json"), "/usr/share/luci/menu.d/luci-app-lanmesh.json", 0o644, false},
				{f(luci + "root/usr/share/rpcd/acl.d/luci-app-lanmesh.json"), "/usr/share/rpcd/acl.d/luci-app-lanmesh.json", 0o644, false},
			},
		})
	}

	var out []string
	for _, s := range specs {
		p, err := build(o, s)
		if err != nil {
			return out, fmt.Errorf("package %s (%s): %w", s.name, s.arch, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func archNames() string {
	var n []string
	for _, a := range Arches {
		n = append(n, a.Name)
	}
	return strings.Join(n, ", ") + ", all"
}

func build(o Options, s spec) (string, error) {
	info := &nfpm.Info{
		Name:          s.name,
		Arch:          s.arch,
		Platform:      "linux",
		Version:       o.Version,
		VersionSchema: "none",
		Release:       o.Release,
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "lanmesh developers",
		Description:   s.desc,
		Homepage:      "https://github.com/lanmesh/lanmesh",
		License:       "BSD-3-Clause",
		MTime:         o.MTime,
		Overridables: nfpm.Overridables{
			Depends: s.depends,
			IPK:     nfpm.IPK{Arch: s.arch},
		},
	}
	var tmp []string
	defer func() {
		for _, t := range tmp {
			os.Remove(t)
		}
	}()
	script := func(body string) (string, error) {
		t, err := os.CreateTemp("", "lanmesh-pkg-script-")
		if err != nil {
			return "", err
		}
		tmp = append(tmp, t.Name())
		_, err = t.WriteString(body)
		if cerr := t.Close(); err == nil {
			err = cerr
		}
		return t.Name(), err
	}
	var err error
	if info.Scripts.PostInstall, err = script(postinst); err != nil {
		return "", err
	}
	if info.Scripts.PreRemove, err = script(prerm); err != nil {
		return "", err
	}
	var size int64
	for _, f := range s.files {
		// nfpm packages a symlink as a symlink: package what it points at.
		src, err := filepath.EvalSymlinks(f.src)
		if err != nil {
			return "", err
		}
		st, err := os.Stat(src)
		if err != nil {
			return "", err
		}
		size += st.Size()
		typ := ""
		if f.conf {
			typ = files.TypeConfig
		}
		info.Contents = append(info.Contents, &files.Content{
			Source: src, Destination: f.dst, Type: typ,
			FileInfo: &files.ContentFileInfo{Mode: f.mode, MTime: o.MTime, Owner: "root", Group: "root"},
		})
	}
	info = nfpm.WithDefaults(info)
	if err := info.Validate(); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := ipk.Default.Package(info, &buf); err != nil {
		return "", err
	}
	b, err := finish(buf.Bytes(), size)
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s_%s-%s_%s.ipk", s.name, o.Version, o.Release, s.arch)
	p := filepath.Join(o.OutDir, name)
	return p, os.WriteFile(p, b, 0o644)
}

// finish rewrites what nfpm wrote the way OpenWrt's package builder would:
// the control file's Installed-Size from nfpm's KiB (the Debian unit) to
// bytes (ipkg-build's du -bs, which opkg's free-space check reads), and
// every archive compressed by the gzip program, as ipkg-build does,
// instead of Go's compress/gzip (writeTGZ has the numbers).
func finish(pkg []byte, size int64) ([]byte, error) {
	entries, err := readTGZ(pkg)
	if err != nil {
		return nil, fmt.Errorf("read ipk: %w", err)
	}
	done := false
	for i, e := range entries {
		switch strings.TrimPrefix(e.name, "./") {
		case "data.tar.gz":
			inner, err := readTGZ(e.data)
			if err != nil {
				return nil, fmt.Errorf("read data.tar.gz: %w", err)
			}
			if entries[i].data, err = writeTGZ(inner); err != nil {
				return nil, err
			}
		case "control.tar.gz":
			inner, err := readTGZ(e.data)
			if err != nil {
				return nil, fmt.Errorf("read control.tar.gz: %w", err)
			}
			for j, c := range inner {
				if strings.TrimPrefix(c.name, "./") == "control" {
					line := "Installed-Size: " + strconv.FormatInt(size, 10)
					if installedSizeRe.Match(c.data) {
						inner[j].data = installedSizeRe.ReplaceAll(c.data, []byte(line))
					} else {
						inner[j].data = append(bytes.TrimRight(c.data, "\n"), []byte("\n"+line+"\n")...)
					}
					done = true
				}
			}
			if entries[i].data, err = writeTGZ(inner); err != nil {
				return nil, err
			}
		}
	}
	if !done {
		return nil, errors.New("ipk has no control file")
	}
	return writeTGZ(entries)
}

type entry struct {
	name string
	hdr  tar.Header
	data []byte
}

// maxUnpackedBytes bounds what readTGZ inflates (a package holds one
// binary of about 12 MiB), so a crafted archive cannot exhaust memory.
const maxUnpackedBytes = 64 << 20

func readTGZ(b []byte) ([]entry, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	lr := &io.LimitedReader{R: zr, N: maxUnpackedBytes + 1}
	tr := tar.NewReader(lr)
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		d, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		if lr.N <= 0 {
			return nil, fmt.Errorf("archive unpacks to more than %d bytes", maxUnpackedBytes)
		}
		out = append(out, entry{name: h.Name, hdr: *h, data: d})
	}
}

var installedSizeRe = regexp.MustCompile(`(?m)^Installed-Size: \d+$`)

// writeTGZ writes a gzipped tar, compressed by `gzip -9 -n` (no name or
// time stamp in the header, so builds stay reproducible). Measured on the
// 12.39 MB linux/mipsle lanmesh: Go's compress/gzip makes 4,224,300 bytes
// at its default level and 4,206,865 at level 9, klauspost/compress
// 4,194,688, GNU gzip -9 4,149,908; the difference is what keeps the
// mipsel_24kc package under its 4 MiB goal.
func writeTGZ(es []entry) ([]byte, error) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, e := range es {
		h := e.hdr
		h.Size = int64(len(e.data))
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return gzipBest(tb.Bytes())
}

func gzipBest(b []byte) ([]byte, error) {
	gz, err := exec.LookPath("gzip")
	if err != nil {
		return nil, errors.New("gzip not found: install it (Debian: apt-get install gzip); the packages are compressed with it, as OpenWrt's ipkg-build does")
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(gz, "-9", "-n", "-c")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(b), &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("gzip -9: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out.Bytes(), nil
}

type aclFile map[string]struct {
	Description string `json:"description"`
	Read        struct {
		File map[string][]string `json:"file"`
		UCI  []string            `json:"uci"`
	} `json:"read"`
	Write struct {
		File map[string][]string `json:"file"`
		UCI  []string            `json:"uci"`
	} `json:"write"`
}

// LuCIACLCommands returns the commands the rpcd ACL of luci-app-lanmesh
// (under the feed directory) lets LuCI run; the tests run each against a
// real agent (internal/e2e).
func LuCIACLCommands(feed string) ([][]string, error) {
	b, err := os.ReadFile(filepath.Join(feed, "luci-app-lanmesh/root/usr/share/rpcd/acl.d/luci-app-lanmesh.json"))
	if err != nil {
		return nil, err
	}
	var acl aclFile
	if err := json.Unmarshal(b, &acl); err != nil {
		return nil, err
	}
	var out [][]string
	for _, g := range acl {
		for cmd, perms := range g.Read.File {
			for _, p := range perms {
				if p == "exec" {
					out = append(out, strings.Fields(cmd))
				}
			}
		}
		for cmd, perms := range g.Write.File {
			for _, p := range perms {
				if p == "exec" {
					out = append(out, strings.Fields(cmd))
				}
			}
		}
	}
	return out, nil
}
