// Package vmtest boots real Linux kernels under QEMU (TCG) for tests that
// need what the host kernel lacks: the WireGuard kernel module, a router's
// MIPS CPU and kernel. It fetches Debian's own kernel and busybox packages
// with apt-get into a cache (/var/cache/lanmesh-vm), builds an initramfs in
// Go with busybox, the kernel modules a test names (their dependencies
// resolved from each module's modinfo), an /init and the lanmesh binary,
// and runs commands in the VM over a second serial port. BootOpenWrt boots
// a router the way OpenWrt runs lanmesh: the files of the .ipk that
// internal/opkg builds (OpenWrtPackage), UCI files for the config, the
// agent started with the init script's command line.
//
// Network safety: a VM's NIC is always a tap device inside a testbed
// namespace (testbed.Host.AddTap, testbed.Segment.AttachTap), never a host
// interface; without one the VM has no NIC at all. QEMU runs inside that
// namespace as a testbed process, so World.Close stops it.
package vmtest
