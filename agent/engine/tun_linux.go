package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/lanmesh/lanmesh/agent/kernelhint"
)

// refuseTUNOffload lets tests play a kernel that refuses TUN offloads.
var refuseTUNOffload func() error

// createTUN opens the mesh TUN, with offloads (IFF_VNET_HDR: TSO in, GRO
// out) when asked. A kernel that refuses them (EINVAL, EIO; offloads have
// had kernel bugs) gets a TUN without them instead of a failed start.
// This is tun.CreateTUN's work done by hand, so that a refused setup can
// close its fd: a leaked fd would keep the interface name busy.
//
// It returns the batch TUN reads need: maxSegs when the link's
// gso_max_segs could be set to it, else the device's own batch (128 with
// offloads). wireguard-go splits one TSO super-packet into the read's
// batch and drops what does not fit, so the batch must cover the largest
// super-packet the kernel may hand over; capping the segments is what lets
// the batch, and with it the buffers each reader pins, be small.
func createTUN(name string, mtu int, offload bool, maxSegs int, log *slog.Logger) (tun.Device, int, error) {
	if offload {
		dev, segErr, err := openTUN(name, mtu, true, maxSegs)
		if err == nil {
			if segErr != nil {
				// Old kernels cannot change gso_max_segs of a link. Correct
				// but bigger: every reader then holds the device's batch.
				log.Warn("cannot cap TUN GSO segments; using a larger batch", "tun", name, "segs", maxSegs, "err", segErr)
				return dev, max(dev.BatchSize(), maxSegs), nil
			}
			return dev, maxSegs, nil
		}
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EIO) {
			return nil, 0, err
		}
		log.Warn("TUN offloads refused by the kernel; running without them", "tun", name, "err", err)
	}
	dev, _, err := openTUN(name, mtu, false, 0)
	return dev, maxSegs, err
}

// setGSOMaxSegs is `ip link set dev name gso_max_segs n`. It must happen
// before traffic (TCP sockets copy the limit when they pick their route)
// and before wireguard-go watches the link: it would react to the change
// by reading the MTU from a thread outside our namespace, and warn.
func setGSOMaxSegs(name string, n int) error {
	if setGSOMaxSegsHook != nil {
		return setGSOMaxSegsHook(name, n)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := netlink.LinkSetGSOMaxSegs(l, n); err != nil {
		return fmt.Errorf("set gso_max_segs %d on %s: %w", n, name, err)
	}
	return nil
}

// setGSOMaxSegsHook lets tests play a kernel that cannot set gso_max_segs.
var setGSOMaxSegsHook func(name string, n int) error

// openTUN opens the TUN; with vnetHdr it also caps the link's GSO segments
// at maxSegs, reporting a failure to do so in segErr (not fatal).
func openTUN(name string, mtu int, vnetHdr bool, maxSegs int) (_ tun.Device, segErr, err error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, kernelhint.Explain(kernelhint.TUN, fmt.Errorf("open /dev/net/tun: %w", err))
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("TUN name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("create TUN %s: %w", name, err)
	}
	if vnetHdr && refuseTUNOffload != nil {
		if err := refuseTUNOffload(); err != nil {
			unix.Close(fd)
			return nil, nil, fmt.Errorf("TUN %s offloads: %w", name, err)
		}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("TUN %s nonblocking: %w", name, err)
	}
	if vnetHdr {
		segErr = setGSOMaxSegs(name, maxSegs)
	}
	f := os.NewFile(uintptr(fd), "/dev/net/tun")
	dev, err := tun.CreateTUNFromFile(f, mtu)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("TUN %s setup (offloads=%v): %w", name, vnetHdr, err)
	}
	return dev, segErr, nil
}
