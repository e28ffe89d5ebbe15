package opkg

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
)

// Package is an .ipk read back the way opkg reads it: the outer gzipped
// tar of debian-binary, control.tar.gz and data.tar.gz.
type Package struct {
	Control   string          // the control file
	Conffiles []string        // paths listed in conffiles
	Scripts   map[string]File // postinst, prerm, ... by name
	Files     map[string]File // data.tar.gz's regular files by absolute path
}

// File is one regular file of a package.
type File struct {
	Mode fs.FileMode // permission bits
	Data []byte
}

// Field returns a control field ("" when absent).
func (p *Package) Field(name string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: (.*)$`).FindStringSubmatch(p.Control)
	if m == nil {
		return ""
	}
	return m[1]
}

// maxPackageBytes bounds what Read unpacks: the biggest package is one
// router binary (12 MiB) plus a few scripts.
const maxPackageBytes = 64 << 20

// Read unpacks the .ipk at path (for tests and tools that install its
// files somewhere, e.g. into a VM's root file system).
func Read(file string) (*Package, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxPackageBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than any lanmesh package (%d)", file, st.Size(), maxPackageBytes)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return Parse(file, b)
}

// Parse reads the bytes of an .ipk; name is for errors.
func Parse(file string, b []byte) (*Package, error) {
	if len(b) > maxPackageBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than any lanmesh package (%d)", file, len(b), maxPackageBytes)
	}
	outer, err := readTGZ(b)
	if err != nil {
		return nil, fmt.Errorf("%s: not a gzipped tar (an OpenWrt 24.10 .ipk): %w", file, err)
	}
	p := &Package{Scripts: map[string]File{}, Files: map[string]File{}}
	seen := map[string]bool{}
	for _, e := range outer {
		member := strings.TrimPrefix(e.name, "./")
		seen[member] = true
		switch member {
		case "debian-binary":
			if string(e.data) != "2.0\n" {
				return nil, fmt.Errorf("%s: debian-binary is %q, want \"2.0\\n\"", file, e.data)
			}
		case "control.tar.gz", "data.tar.gz":
			inner, err := readTGZ(e.data)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", file, member, err)
			}
			for _, f := range inner {
				if f.hdr.Typeflag != tar.TypeReg && f.hdr.Typeflag != tar.TypeRegA {
					continue
				}
				name := path.Clean("/" + strings.TrimPrefix(f.name, "./"))
				pf := File{Mode: fs.FileMode(f.hdr.Mode).Perm(), Data: f.data}
				if member == "data.tar.gz" {
					p.Files[name] = pf
					continue
				}
				switch name {
				case "/control":
					p.Control = string(f.data)
				case "/conffiles":
					p.Conffiles = strings.Fields(string(f.data))
				default:
					p.Scripts[strings.TrimPrefix(name, "/")] = pf
				}
			}
		}
	}
	for _, m := range []string{"debian-binary", "control.tar.gz", "data.tar.gz"} {
		if !seen[m] {
			return nil, fmt.Errorf("%s: no %s member", file, m)
		}
	}
	if p.Control == "" {
		return nil, fmt.Errorf("%s: control.tar.gz has no control file", file)
	}
	return p, nil
}
