package vmtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
)

// DefaultCacheDir keeps downloaded and unpacked Debian packages between
// runs; $LANMESH_VM_CACHE overrides it.
const DefaultCacheDir = "/var/cache/lanmesh-vm"

// CacheDir is where packages are kept.
func CacheDir() string {
	if d := os.Getenv("LANMESH_VM_CACHE"); d != "" {
		return d
	}
	return DefaultCacheDir
}

// Kernel is one unpacked Debian kernel package plus the busybox of the
// same architecture.
type Kernel struct {
	Arch    Arch
	Package string // e.g. linux-image-6.1.0-48-amd64
	Release string // e.g. 6.1.0-48-amd64 (uname -r)
	Vmlinuz string
	Busybox string // static busybox binary for the guest
	Modules *ModuleTree
}

// FetchKernel returns the kernel and busybox for arch, downloading them
// with `apt-get download` and unpacking with `dpkg-deb -x` into the cache
// the first time. Concurrent test processes share the cache under a lock.
func FetchKernel(ctx context.Context, arch Arch) (*Kernel, error) {
	spec, err := arch.spec()
	if err != nil {
		return nil, err
	}
	cache := filepath.Join(CacheDir(), spec.debArch)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("vmtest: cache %s: %w", cache, err)
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("vmtest: cache lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("vmtest: cache lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	pkg, err := kernelPackage(ctx, spec)
	if err != nil {
		return nil, err
	}
	kdir, err := unpacked(ctx, cache, pkg, spec.debArch)
	if err != nil {
		return nil, err
	}
	bdir, err := unpacked(ctx, cache, "busybox-static", spec.debArch)
	if err != nil {
		return nil, err
	}
	k := &Kernel{Arch: arch, Package: pkg, Busybox: filepath.Join(bdir, "bin", "busybox")}
	vm, _ := filepath.Glob(filepath.Join(kdir, "boot", "vmlinu*"))
	if len(vm) != 1 {
		return nil, fmt.Errorf("vmtest: %s: want one boot/vmlinu* in %s, found %d", pkg, kdir, len(vm))
	}
	k.Vmlinuz = vm[0]
	mods, _ := filepath.Glob(filepath.Join(kdir, "lib", "modules", "*"))
	if len(mods) != 1 {
		return nil, fmt.Errorf("vmtest: %s: want one lib/modules/<release> in %s, found %d", pkg, kdir, len(mods))
	}
	k.Release = filepath.Base(mods[0])
	if k.Modules, err = OpenModuleTree(mods[0]); err != nil {
		return nil, err
	}
	if _, err := os.Stat(k.Busybox); err != nil {
		return nil, fmt.Errorf("vmtest: busybox-static:%s has no bin/busybox: %w", spec.debArch, err)
	}
	return k, nil
}

var dependsRe = regexp.MustCompile(`(?m)^\s*Depends:\s*(linux-image-[0-9][^\s:]*)`)

// kernelPackage names the versioned kernel package the meta package
// (linux-image-amd64, linux-image-4kc-malta) points at today.
func kernelPackage(ctx context.Context, spec archSpec) (string, error) {
	meta := spec.kernelMeta + ":" + spec.debArch
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", meta).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("vmtest: apt-cache depends %s: %v: %s (run scripts/deps.sh: it adds the %s architecture and updates the package index)",
			meta, err, bytes.TrimSpace(out), spec.debArch)
	}
	m := dependsRe.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("vmtest: apt-cache depends %s names no linux-image-<version> package:\n%s", meta, out)
	}
	return string(m[1]), nil
}

// unpacked returns the cache directory holding pkg (for debArch) unpacked,
// downloading and unpacking it when it is not there yet.
func unpacked(ctx context.Context, cache, pkg, debArch string) (string, error) {
	dir := filepath.Join(cache, pkg)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(cache, ".fetch-")
	if err != nil {
		return "", fmt.Errorf("vmtest: %w", err)
	}
	defer os.RemoveAll(tmp)
	// apt-get download writes into its working directory.
	dl := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg+":"+debArch)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return "", fmt.Errorf("vmtest: apt-get download %s:%s: %v: %s (run scripts/deps.sh, which adds the architecture and updates the index)",
			pkg, debArch, err, bytes.TrimSpace(out))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("vmtest: apt-get download %s:%s left %d .deb files", pkg, debArch, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return "", fmt.Errorf("vmtest: dpkg-deb -x %s: %v: %s", filepath.Base(debs[0]), err, bytes.TrimSpace(out))
	}
	if err := os.WriteFile(filepath.Join(root, ".complete"), []byte(filepath.Base(debs[0])+"\n"), 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(dir) // a half-made leftover of a crashed run
	if err := os.Rename(root, dir); err != nil {
		return "", fmt.Errorf("vmtest: %w", err)
	}
	return dir, nil
}
