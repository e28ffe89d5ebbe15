package magicsock

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// refusalLoop watches for ICMP port unreachable errors about our own
// disco pings and hands them to disco (Manager.HandleRefused): a peer's
// NAT box that answers our ping itself has no mapping for us yet, and if
// it accepted the ping into its own INPUT chain, the conntrack entry that
// left makes its router's pings to us leave from another port (see
// agent/disco/hold.go). The UDP socket stays as it is (no IP_RECVERR,
// whose pending errors would fail the WireGuard reads); a raw ICMP socket,
// filtered by the kernel to destination-unreachable messages, sees a copy
// of each. Without CAP_NET_RAW the loop logs once and ends: punching then
// works as before, only without this repair.
func (c *Conn) refusalLoop() {
	var (
		pc  net.PacketConn
		err error
	)
	c.inNS(func() { pc, err = net.ListenPacket("ip4:icmp", "0.0.0.0") })
	if err != nil || pc == nil {
		c.log.Info("no ICMP watch: refused pings are not noticed (NATs that accept unsolicited UDP may keep peers on the relay)", "err", err)
		return
	}
	defer pc.Close()
	if rc, err := pc.(*net.IPConn).SyscallConn(); err == nil {
		// ICMP_FILTER: a set bit drops that type; keep only type 3.
		// Through an int32 variable: the constant overflows a 32-bit int
		// (mipsle, arm), and the kernel reads the same 32 bits either way.
		mask := ^uint32(1 << 3)
		rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_RAW, unix.ICMP_FILTER, int(int32(mask)))
		})
	}
	buf := make([]byte, 1500)
	for c.ctx.Err() == nil {
		pc.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if c.ctx.Err() == nil {
				c.log.Debug("ICMP watch ended", "err", err)
			}
			return
		}
		ip, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		src, _ := netip.AddrFromSlice(ip.IP)
		dst, ok := refusedUDP(buf[:n], c.Port())
		if !ok || dst.Addr() != src.Unmap() {
			continue // not about our socket, or not from the host we sent to
		}
		if m := c.disco.Load(); m != nil {
			m.HandleRefused(dst)
		}
	}
}

// refusedUDP parses an ICMPv4 port unreachable (without the outer IP
// header) and returns the destination of the quoted UDP datagram when its
// source port is port.
func refusedUDP(b []byte, port uint16) (netip.AddrPort, bool) {
	const icmpHdr = 8
	if port == 0 || len(b) < icmpHdr+20+8 || b[0] != 3 || b[1] != 3 {
		return netip.AddrPort{}, false
	}
	q := b[icmpHdr:]
	ihl := int(q[0]&0x0f) * 4
	if q[0]>>4 != 4 || ihl < 20 || len(q) < ihl+8 || q[9] != syscall.IPPROTO_UDP {
		return netip.AddrPort{}, false
	}
	udp := q[ihl:]
	if binary.BigEndian.Uint16(udp[0:2]) != port {
		return netip.AddrPort{}, false
	}
	dst := netip.AddrFrom4([4]byte(q[16:20]))
	return netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:4])), true
}
