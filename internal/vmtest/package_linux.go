package vmtest

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// FetchPackage returns the cache directory holding Debian package pkg for
// arch's Debian architecture, unpacked with dpkg-deb -x (downloaded with
// apt-get download the first time), e.g. wireguard-tools and libc6 for a
// dynamically linked tool in a guest (see DebianTool).
func FetchPackage(ctx context.Context, arch Arch, pkg string) (string, error) {
	spec, err := arch.spec()
	if err != nil {
		return "", err
	}
	cache := filepath.Join(CacheDir(), spec.debArch)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("vmtest: cache %s: %w", cache, err)
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("vmtest: cache lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("vmtest: cache lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	return unpacked(ctx, cache, pkg, spec.debArch)
}

// DebianTool returns the guest files that run program (a path inside
// Debian package pkg, e.g. /usr/bin/wg of wireguard-tools) in a busybox
// guest of arch: the program, its ELF interpreter and the shared
// libraries it names, found in libPkgs (e.g. libc6). Debian ships few
// tools statically linked; this is how a guest gets the stock one.
func DebianTool(ctx context.Context, arch Arch, pkg, program string, libPkgs ...string) (map[string]File, error) {
	dir, err := FetchPackage(ctx, arch, pkg)
	if err != nil {
		return nil, err
	}
	files := map[string]File{}
	host := filepath.Join(dir, program)
	b, err := os.ReadFile(host)
	if err != nil {
		return nil, fmt.Errorf("vmtest: %s:%s has no %s: %w", pkg, arch, program, err)
	}
	files[program] = File{Data: b, Mode: 0o755}
	f, err := elf.Open(host)
	if err != nil {
		return nil, fmt.Errorf("vmtest: %s: %w", program, err)
	}
	defer f.Close()
	var need []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return nil, fmt.Errorf("vmtest: %s: interpreter: %w", program, err)
			}
			need = append(need, string(trimNUL(b)))
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("vmtest: %s: shared libraries: %w", program, err)
	}
	need = append(need, libs...)
	var roots []string
	for _, lp := range libPkgs {
		d, err := FetchPackage(ctx, arch, lp)
		if err != nil {
			return nil, err
		}
		roots = append(roots, d)
	}
	for _, n := range need {
		guest, data, err := findLib(roots, n)
		if err != nil {
			return nil, fmt.Errorf("vmtest: %s needs %s: %w (name the package holding it in libPkgs)", program, n, err)
		}
		files[guest] = File{Data: data, Mode: 0o755}
		// The interpreter is looked up by its absolute name, the
		// libraries by name in the default search path: put each where
		// the guest's loader looks too.
		if filepath.IsAbs(n) && n != guest {
			files[n] = File{Data: data, Mode: 0o755}
		}
	}
	return files, nil
}

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// findLib looks for a library (an absolute interpreter path or a soname)
// in the unpacked packages: the interpreter at its own path, a soname in
// lib/<triplet>, usr/lib/<triplet>, lib and usr/lib. It returns the
// guest path and the file's contents, symlinks resolved inside root.
func findLib(roots []string, name string) (string, []byte, error) {
	for _, root := range roots {
		var cands []string
		if filepath.IsAbs(name) {
			cands = []string{name}
		} else {
			ms, _ := filepath.Glob(filepath.Join(root, "lib", "*-linux-*", name))
			ms2, _ := filepath.Glob(filepath.Join(root, "usr", "lib", "*-linux-*", name))
			for _, m := range append(ms, ms2...) {
				rel, _ := filepath.Rel(root, m)
				cands = append(cands, "/"+rel)
			}
			cands = append(cands, "/lib/"+name, "/usr/lib/"+name)
		}
		for _, c := range cands {
			data, err := readInRoot(root, c)
			if err == nil {
				return c, data, nil
			}
		}
	}
	return "", nil, fmt.Errorf("not found in %v", roots)
}

// readInRoot reads guest path p of an unpacked package, following
// symlinks (absolute ones relative to root) a few levels deep.
func readInRoot(root, p string) ([]byte, error) {
	for i := 0; i < 8; i++ {
		hp := filepath.Join(root, p)
		fi, err := os.Lstat(hp)
		if err != nil {
			return nil, err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return os.ReadFile(hp)
		}
		t, err := os.Readlink(hp)
		if err != nil {
			return nil, err
		}
		if filepath.IsAbs(t) {
			p = t
		} else {
			p = filepath.Join(filepath.Dir(p), t)
		}
	}
	return nil, fmt.Errorf("%s: too many symlinks", p)
}

// CanBoot says why arch's VM cannot boot here (not root, QEMU or the
// Debian tools missing), or nil: Require for programs that are not tests,
// such as the benchmarks.
func CanBoot(arch Arch) error { return missing(arch) }
