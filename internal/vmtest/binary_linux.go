package vmtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

var (
	binMu sync.Mutex
	built = map[Arch]string{}
)

// RouterBinary returns a stripped lanmesh for the guest architecture:
// $LANMESH_BIN_DIR/linux_<arch>/lanmesh from `make build` when it exists,
// else one built once per process with scripts/build.sh (the same flags
// as the router builds) into lanmesh-vmtest-bin-<pid> in the temp dir,
// which a later run removes once this process is gone.
func RouterBinary(ctx context.Context, arch Arch) (string, error) {
	spec, err := arch.spec()
	if err != nil {
		return "", err
	}
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := built[arch]; ok {
		return p, nil
	}
	if d := os.Getenv("LANMESH_BIN_DIR"); d != "" {
		p := filepath.Join(d, "linux_"+string(arch), "lanmesh")
		if _, err := os.Stat(p); err == nil {
			built[arch] = p
			return p, nil
		}
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("vmtest: no linux_%s/lanmesh in $LANMESH_BIN_DIR and not inside the lanmesh module to build one (run make build)", arch)
	}
	sweepBinDirs()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("lanmesh-vmtest-bin-%d", os.Getpid()))
	p := filepath.Join(dir, "linux_"+string(arch), "lanmesh")
	cmd := exec.CommandContext(ctx, "scripts/build.sh", "lanmesh", p, "0", spec.goPlatform, "")
	cmd.Dir = filepath.Dir(mod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("vmtest: build lanmesh for %s: %v\n%s", spec.goPlatform, err, b)
	}
	built[arch] = p
	return p, nil
}

// sweepBinDirs removes the build dirs of test processes that are gone.
func sweepBinDirs() {
	ms, _ := filepath.Glob(filepath.Join(os.TempDir(), "lanmesh-vmtest-bin-*"))
	for _, m := range ms {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(m), "lanmesh-vmtest-bin-%d", &pid); err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(m)
		}
	}
}
