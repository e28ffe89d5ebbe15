package vmtest

import (
	"fmt"
	"os"
	"os/exec"
)

// Require skips a test that cannot boot arch's VM here (not root, no QEMU
// for arch), or fails it when CI=true: CI must run every VM test.
func Require(t interface {
	Helper()
	Skip(...any)
	Fatal(...any)
}, arch Arch) {
	t.Helper()
	if err := missing(arch); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err, "(CI=true: a VM test never skips; scripts/deps.sh installs QEMU)")
		}
		t.Skip(err)
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
