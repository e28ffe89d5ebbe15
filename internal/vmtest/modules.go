package vmtest

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ulikunitz/xz"
)

// Module is one loadable kernel module found in a kernel's module tree.
type Module struct {
	Name string // normalised: dashes become underscores, as the kernel does
	Path string // file under the module tree (.ko or .ko.xz)
}

// ModuleTree indexes the modules of one kernel (lib/modules/<release>).
// Debian's package ships no modules.dep (depmod makes it at install), so
// dependencies come from each module's own .modinfo "depends=" field.
type ModuleTree struct {
	Dir     string
	mods    map[string]string // name -> path
	builtin map[string]bool
}

// modName turns "kernel/net/ipv4/udp_tunnel.ko.xz" or "chacha-x86_64" into
// the kernel's module name ("udp_tunnel", "chacha_x86_64").
func modName(s string) string {
	s = filepath.Base(s)
	s = strings.TrimSuffix(s, ".xz")
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// OpenModuleTree indexes dir (lib/modules/<release>).
func OpenModuleTree(dir string) (*ModuleTree, error) {
	t := &ModuleTree{Dir: dir, mods: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".ko") || strings.HasSuffix(p, ".ko.xz")) {
			t.mods[modName(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("vmtest: index modules in %s: %w", dir, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			t.builtin[modName(l)] = true
		}
	}
	return t, nil
}

// Resolve returns the modules to insmod, in load order (each after its
// dependencies), for the named modules. Built-in modules are left out; a
// name that is neither a module nor built in is an error.
func (t *ModuleTree) Resolve(names ...string) ([]Module, error) {
	var out []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string, from string) error
	visit = func(n, from string) error {
		n = modName(n)
		switch state[n] {
		case 1:
			return fmt.Errorf("vmtest: module dependency cycle at %s", n)
		case 2:
			return nil
		}
		p, ok := t.mods[n]
		if !ok {
			if t.builtin[n] {
				state[n] = 2
				return nil
			}
			if from != "" {
				return fmt.Errorf("vmtest: module %s (needed by %s) is not in %s", n, from, t.Dir)
			}
			return fmt.Errorf("vmtest: module %s is neither a module nor built into the kernel in %s", n, t.Dir)
		}
		state[n] = 1
		data, err := ReadModule(p)
		if err != nil {
			return err
		}
		deps, pre, err := modDepends(data)
		if err != nil {
			return fmt.Errorf("vmtest: %s: %w", p, err)
		}
		// Soft dependencies name what the module asks for at init (e.g.
		// libcrc32c allocates the "crc32c" hash), which insmod, unlike
		// modprobe, does not load by itself. They are often crypto
		// algorithm names: by kernel convention "<alg>_generic" is the
		// portable implementation.
		for _, d := range pre {
			d = modName(d)
			if _, ok := t.mods[d]; !ok {
				if _, ok := t.mods[d+"_generic"]; !ok {
					continue // built in, or optional
				}
				d += "_generic"
			}
			if err := visit(d, n); err != nil {
				return err
			}
		}
		for _, d := range deps {
			if err := visit(d, n); err != nil {
				return err
			}
		}
		state[n] = 2
		out = append(out, Module{Name: n, Path: p})
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReadModule returns a module file's ELF bytes, decompressing .ko.xz:
// the kernels these VMs run (6.1) cannot load compressed modules through
// busybox insmod.
func ReadModule(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(path, ".xz") {
		return b, nil
	}
	r, err := xz.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("vmtest: xz %s: %w", path, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("vmtest: xz %s: %w", path, err)
	}
	return out, nil
}

// modDepends reads the "depends=" and "softdep=pre:" entries of a
// module's .modinfo section.
func modDepends(ko []byte) (deps, pre []string, err error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, nil, fmt.Errorf("not an ELF module: %w", err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil, errors.New("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, nil, fmt.Errorf("read .modinfo: %w", err)
	}
	deps, pre = parseModinfo(info)
	return deps, pre, nil
}

// parseModinfo picks the module names of "depends=a,b" and of the "pre:"
// part of "softdep=pre: a b post: c" out of a NUL-separated .modinfo blob.
func parseModinfo(info []byte) (deps, pre []string) {
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, d)
				}
			}
		}
		if v, ok := bytes.CutPrefix(kv, []byte("softdep=")); ok {
			inPre := false
			for _, f := range strings.Fields(string(v)) {
				switch {
				case f == "pre:":
					inPre = true
				case strings.HasSuffix(f, ":"):
					inPre = false
				case inPre:
					pre = append(pre, f)
				}
			}
		}
	}
	return deps, pre
}
