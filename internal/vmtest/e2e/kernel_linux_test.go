package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/vmtest"
)

// hostTools returns the host's programs (e.g. wg, nft) and the shared
// libraries they need, as initramfs files, so the x86-64 guest can run
// `wg show` and `nft list` against its own kernel (Debian ships neither
// statically linked).
func hostTools(t *testing.T, names ...string) map[string]vmtest.File {
	t.Helper()
	files := map[string]vmtest.File{}
	for _, n := range names {
		addTool(t, files, n)
	}
	return files
}

func addTool(t *testing.T, files map[string]vmtest.File, name string) {
	t.Helper()
	wg, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (scripts/deps.sh installs it): %v", name, err)
	}
	add := func(guest, host string) {
		b, err := os.ReadFile(host)
		if err != nil {
			t.Fatal(err)
		}
		// Executable: the program and its ELF interpreter.
		files[guest] = vmtest.File{Data: b, Mode: 0o755}
	}
	add("/usr/bin/"+name, wg)
	out, err := exec.Command("ldd", wg).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", wg, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "/") {
				real, err := filepath.EvalSymlinks(f)
				if err != nil {
					t.Fatal(err)
				}
				add(f, real)
			}
		}
	}
}
