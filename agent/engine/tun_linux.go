package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// refuseTUNOffload lets tests play a kernel that refuses TUN offloads.
var refuseTUNOffload func() error

// createTUN opens the mesh TUN, with offloads (IFF_VNET_HDR: TSO in, GRO
// out) when asked. A kernel that refuses them (EINVAL, EIO; offloads have
// had kernel bugs) gets a TUN without them instead of a failed start.
// This is tun.CreateTUN's work done by hand, so that a refused setup can
// close its fd: a leaked fd would keep the interface name busy.
func createTUN(name string, mtu int, offload bool, log *slog.Logger) (tun.Device, error) {
	if offload {
		dev, err := openTUN(name, mtu, true)
		if err == nil {
			return dev, nil
		}
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EIO) {
			return nil, err
		}
		log.Warn("TUN offloads refused by the kernel; running without them", "tun", name, "err", err)
	}
	return openTUN(name, mtu, false)
}

func openTUN(name string, mtu int, vnetHdr bool) (tun.Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUN name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TUN %s: %w", name, err)
	}
	if vnetHdr && refuseTUNOffload != nil {
		if err := refuseTUNOffload(); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("TUN %s offloads: %w", name, err)
		}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUN %s nonblocking: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), "/dev/net/tun")
	dev, err := tun.CreateTUNFromFile(f, mtu)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("TUN %s setup (offloads=%v): %w", name, vnetHdr, err)
	}
	return dev, nil
}
