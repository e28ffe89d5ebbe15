package sockmark

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Control is a net.Dialer / net.ListenConfig Control function that sets
// Mark on the socket. Without CAP_NET_ADMIN (EPERM) the socket stays
// unmarked and usable: the same missing right keeps agent/router from
// installing the exit-node rules, so nothing can loop. Any other failure
// is an error.
func Control(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) { serr = Set(int(fd)) }); err != nil {
		return fmt.Errorf("mark socket: %w", err)
	}
	return serr
}

// Set marks the socket fd (nil on EPERM, see Control).
func Set(fd int) error {
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(Mark))
	if err != nil && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("set SO_MARK %#x: %w", Mark, err)
	}
	return nil
}
