package magicsock

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// gsoControlSpace is the room one UDP_SEGMENT or UDP_GRO control message
// (a uint16 segment size) takes.
var gsoControlSpace = unix.CmsgSpace(2)

// groSegmentSize returns the segment size of a coalesced datagram from the
// UDP_GRO control message in oob, or 0 when the datagram was not coalesced.
// oob comes from the kernel, but it is parsed defensively all the same.
func groSegmentSize(oob []byte) (int, error) {
	for len(oob) >= unix.SizeofCmsghdr {
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0, fmt.Errorf("parse socket control message: %w", err)
		}
		if hdr.Level == unix.SOL_UDP && hdr.Type == unix.UDP_GRO {
			if len(data) < 2 {
				return 0, fmt.Errorf("UDP_GRO control message: %d data bytes, want 2", len(data))
			}
			return int(*(*uint16)(unsafe.Pointer(&data[0]))), nil
		}
		oob = rest
	}
	return 0, nil
}

// appendSegmentControl appends a UDP_SEGMENT control message asking the
// kernel to cut the datagram into size-byte segments (UDP GSO).
func appendSegmentControl(oob []byte, size uint16) []byte {
	start := len(oob)
	for range gsoControlSpace {
		oob = append(oob, 0)
	}
	b := oob[start:]
	hdr := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	hdr.Level = unix.SOL_UDP
	hdr.Type = unix.UDP_SEGMENT
	hdr.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = size
	return oob
}
