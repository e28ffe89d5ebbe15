package vmtest

import "fmt"

// Arch is a guest architecture, named as GOARCH names it.
type Arch string

const (
	AMD64  Arch = "amd64"  // x86-64: Debian's linux-image-amd64, q35-less "pc" machine
	MIPSLE Arch = "mipsle" // a router's CPU: MIPS Malta, 4Kc, 128 MiB, little endian
)

// archSpec is what differs between guests.
type archSpec struct {
	debArch    string   // Debian architecture of the packages
	kernelMeta string   // meta package naming today's kernel
	qemu       string   // QEMU system emulator
	machine    []string // machine and CPU options
	memMiB     int      // default RAM
	goPlatform string   // scripts/build.sh platform of the guest lanmesh
	nicModules []string // modules a virtio NIC needs
}

func (a Arch) spec() (archSpec, error) {
	switch a {
	case AMD64:
		return archSpec{
			debArch:    "amd64",
			kernelMeta: "linux-image-amd64",
			qemu:       "qemu-system-x86_64",
			// -cpu max: the default qemu64 model lacks SSSE3, and
			// chacha-x86_64 (a WireGuard dependency) refuses to load
			// without it.
			machine:    []string{"-accel", "tcg", "-cpu", "max", "-smp", "1"},
			memMiB:     256,
			goPlatform: "linux/amd64",
			nicModules: []string{"virtio_pci", "virtio_net"},
		}, nil
	case MIPSLE:
		return archSpec{
			debArch:    "mipsel",
			kernelMeta: "linux-image-4kc-malta",
			qemu:       "qemu-system-mipsel",
			// The router's budget: 128 MiB as on small OpenWrt boxes.
			machine:    []string{"-M", "malta", "-accel", "tcg", "-vga", "none"},
			memMiB:     128,
			goPlatform: "linux/mipsle/softfloat",
			nicModules: []string{"virtio_pci", "virtio_net"},
		}, nil
	}
	return archSpec{}, fmt.Errorf("vmtest: unknown architecture %q: want amd64 or mipsle", string(a))
}
