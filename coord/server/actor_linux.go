package server

import (
	"net"
	"strconv"

	"golang.org/x/sys/unix"
)

// socketPeer names the process on the other end of an admin socket
// connection by its uid (SO_PEERCRED), for the audit log.
func socketPeer(c net.Conn) string {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ""
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ""
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ""
	}
	return "uid " + strconv.FormatUint(uint64(cred.Uid), 10)
}
