package vmtest

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// Initramfs is the root file system of a VM: regular files (and the
// directories above them) written as one "newc" cpio archive, which the
// kernel unpacks into its rootfs. Uncompressed on purpose: under TCG the
// guest would spend seconds inflating it, and the host has the memory.
type Initramfs struct {
	files map[string]file
}

type file struct {
	mode fs.FileMode
	data []byte
}

// Add puts a regular file at name (absolute, e.g. "/init") with the
// permission bits of mode. Adding a name twice replaces the first.
func (r *Initramfs) Add(name string, mode fs.FileMode, data []byte) error {
	clean := path.Clean("/" + name)
	if clean == "/" || clean != name {
		return fmt.Errorf("vmtest: initramfs path %q: want a clean absolute file path like /usr/bin/lanmesh", name)
	}
	if r.files == nil {
		r.files = map[string]file{}
	}
	r.files[name] = file{mode: mode.Perm(), data: data}
	return nil
}

// WriteTo writes the archive: every parent directory first, then the
// files, in a stable order.
func (r *Initramfs) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	a := cpio.NewWriter(cw)
	names := make([]string, 0, len(r.files))
	dirs := map[string]bool{}
	for n := range r.files {
		names = append(names, n)
		for d := path.Dir(n); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	dl := make([]string, 0, len(dirs))
	for d := range dirs {
		dl = append(dl, d)
	}
	// Sorted, a parent always comes before its children.
	sort.Strings(dl)
	sort.Strings(names)
	for _, d := range dl {
		h := &cpio.Header{Name: strings.TrimPrefix(d, "/"), Mode: cpio.TypeDir | 0o755, Links: 2}
		if err := a.WriteHeader(h); err != nil {
			return cw.n, fmt.Errorf("vmtest: initramfs dir %s: %w", d, err)
		}
	}
	for _, n := range names {
		f := r.files[n]
		h := &cpio.Header{Name: strings.TrimPrefix(n, "/"), Mode: cpio.TypeReg | cpio.FileMode(f.mode), Size: int64(len(f.data))}
		if err := a.WriteHeader(h); err != nil {
			return cw.n, fmt.Errorf("vmtest: initramfs file %s: %w", n, err)
		}
		if _, err := a.Write(f.data); err != nil {
			return cw.n, fmt.Errorf("vmtest: initramfs file %s: %w", n, err)
		}
	}
	if err := a.Close(); err != nil {
		return cw.n, fmt.Errorf("vmtest: initramfs: %w", err)
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
