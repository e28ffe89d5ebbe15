package magicsock

import (
	"errors"
	"net"
	"net/netip"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// writeBatch is sendmmsg; tests swap it to play a kernel that refuses GSO.
var writeBatch = func(pc batchConn, msgs []ipv6.Message) (int, error) { return pc.WriteBatch(msgs, 0) }

func (s *socket) getMsgs() *[]ipv6.Message { return s.msgs.Get().(*[]ipv6.Message) }

// putMsgs clears the first used messages (the rest are clean) and pools them.
func (s *socket) putMsgs(m *[]ipv6.Message, used int) {
	for i := range (*m)[:used] {
		(*m)[i] = ipv6.Message{Buffers: (*m)[i].Buffers, OOB: (*m)[i].OOB[:0]}
		(*m)[i].Buffers[0] = nil
	}
	s.msgs.Put(m)
}

func (s *socket) send(bufs [][]byte, addr *net.UDPAddr) error {
	msgs := s.getMsgs()
	used := 0
	defer func() { s.putMsgs(msgs, used) }()
	gso := s.gso.Load()
	for {
		n := fillSend(*msgs, bufs, addr, gso, s.is6)
		used = max(used, n)
		err := writeAll(s.pc, (*msgs)[:n])
		if err != nil && gso && (errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL)) {
			// The kernel or the NIC cannot segment (e.g. no TX checksum
			// offload). Turn GSO off for good and resend uncoalesced; a
			// datagram that already left is dropped by the replay window.
			if s.gso.CompareAndSwap(true, false) {
				s.log.Warn("UDP GSO refused by the kernel; sending without it", "err", err, "ipv6", s.is6)
			}
			gso = false
			continue
		}
		return err
	}
}

func writeAll(pc batchConn, msgs []ipv6.Message) error {
	for len(msgs) > 0 {
		n, err := writeBatch(pc, msgs)
		if err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// fillSend puts bufs into msgs and returns how many msgs to send. With gso,
// a run of equal-size packets (the last may be shorter) is appended into the
// spare capacity of the run's first buffer and sent as one datagram with a
// UDP_SEGMENT size; wireguard-go's buffers have that room.
func fillSend(msgs []ipv6.Message, bufs [][]byte, addr *net.UDPAddr, gso, is6 bool) int {
	maxPayload := 1<<16 - 1 - 8 - 20 // IPv4 total length limit
	if is6 {
		maxPayload = 1<<16 - 1 - 8 // IPv6 payload length excludes its header
	}
	n, seg, count, closed := 0, 0, 0, false
	finish := func() {
		if n > 0 && count > 1 {
			msgs[n-1].OOB = appendSegmentControl(msgs[n-1].OOB[:0], uint16(seg))
		}
	}
	for _, b := range bufs {
		if gso && n > 0 {
			cur := msgs[n-1].Buffers[0]
			if !closed && len(b) <= seg && count < maxGROSegments &&
				len(cur)+len(b) <= maxPayload && cap(cur)-len(cur) >= len(b) {
				msgs[n-1].Buffers[0] = append(cur, b...)
				count++
				closed = len(b) < seg // a short packet may only end a run
				continue
			}
		}
		finish()
		msgs[n].Buffers[0] = b
		msgs[n].Addr = addr
		msgs[n].OOB = msgs[n].OOB[:0]
		n, seg, count, closed = n+1, len(b), 1, false
	}
	finish()
	return n
}

// receiveFunc reads WireGuard packets for wireguard-go. handler gets the
// others (disco, STUN), epFor maps a source to its endpoint, and held
// takes a packet out of the batch to deliver it later (holdCrossed).
func (s *socket) receiveFunc(handler func([]byte, netip.AddrPort), epFor func(netip.AddrPort) *Endpoint, held func(*Endpoint, []byte) bool) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		return s.receive(bufs, sizes, eps, handler, epFor, held)
	}
}

func (s *socket) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint, handler func([]byte, netip.AddrPort), epFor func(netip.AddrPort) *Endpoint, held func(*Endpoint, []byte) bool) (int, error) {
	msgs := s.getMsgs()
	defer s.putMsgs(msgs, len(bufs))
	m := (*msgs)[:len(bufs)]
	for i := range m {
		m[i].Buffers[0] = bufs[i]
		m[i].OOB = m[i].OOB[:cap(m[i].OOB)]
	}
	var n int
	if s.gro && len(m) >= maxGROSegments && len(m)%maxGROSegments == 0 {
		// Read whole coalesced datagrams into the last slots, then cut them
		// into the slots from the front; with at most 64 segments each the
		// cuts never reach a datagram not yet cut.
		readAt := len(m) - len(m)/maxGROSegments
		got, err := s.pc.ReadBatch(m[readAt:], 0)
		if err != nil {
			return 0, err
		}
		n = splitGRO(m, readAt, got)
	} else {
		got, err := s.pc.ReadBatch(m, 0)
		if err != nil {
			return 0, err
		}
		n = got
	}
	// A batch is mostly one peer's datagrams (one GRO read): look its
	// endpoint up once.
	var lastAP netip.AddrPort
	var lastEP *Endpoint
	for i := 0; i < n; i++ {
		sizes[i], eps[i] = 0, nil
		if m[i].N == 0 {
			continue
		}
		ua, ok := m[i].Addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		ap := ua.AddrPort()
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		pkt := bufs[i][:m[i].N]
		if !IsWireGuard(pkt) {
			if handler != nil {
				handler(pkt, ap)
				lastEP = nil // disco may just have proven a path
			}
			continue
		}
		if lastEP == nil || ap != lastAP {
			lastAP, lastEP = ap, epFor(ap)
		}
		if held(lastEP, pkt) {
			continue
		}
		sizes[i] = m[i].N
		eps[i] = lastEP
	}
	return n, nil
}

// splitGRO cuts the got coalesced datagrams read into m[readAt:] into
// single datagrams at m[0:], returning how many. Malformed control data
// drops the datagram rather than the whole batch.
func splitGRO(m []ipv6.Message, readAt, got int) int {
	n := 0
	end := readAt + got
	for i := readAt; i < end; i++ {
		msg := &m[i]
		total, addr := msg.N, msg.Addr
		if total == 0 {
			continue
		}
		seg, err := groSegmentSize(msg.OOB[:msg.NN])
		if err != nil || seg <= 0 || seg > total {
			seg = total
		}
		src := msg.Buffers[0]
		for off := 0; off < total; off += seg {
			if n >= len(m) || (n > i && n < end) {
				break // would overwrite a datagram not yet cut: drop the rest
			}
			stop := min(off+seg, total)
			m[n].N = copy(m[n].Buffers[0], src[off:stop])
			m[n].Addr = addr
			n++
		}
		if i >= n {
			msg.N = 0
		}
	}
	return n
}
