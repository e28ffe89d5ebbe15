package vmtest

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// Require skips a test that cannot boot arch's VM here (not root, no QEMU
// for arch), or fails it when CI=true (testenv.Unavailable): CI must run
// every VM test.
func Require(t testenv.TB, arch Arch) {
	t.Helper()
	if err := missing(arch); err != nil {
		testenv.Unavailable(t, "%v", err)
	}
}

func missing(arch Arch) error {
	spec, err := arch.spec()
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("vmtest: needs root (testbed namespaces and tap devices)")
	}
	for _, tool := range []string{spec.qemu, "apt-get", "apt-cache", "dpkg-deb", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("vmtest: %s not found: run scripts/deps.sh", tool)
		}
	}
	return nil
}
