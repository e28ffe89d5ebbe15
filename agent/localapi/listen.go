package localapi

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// listenHook, when set (tests), runs after the socket exists in its
// private directory and before it is moved to its public path.
var listenHook func(tmpSock, path string)

// listenPrivate creates the unix socket at path with mode 0600 and no
// moment where it exists with a wider mode: it is created in a fresh
// 0700 directory next to path (nobody but root can reach it there),
// chmodded, and renamed into place, which is atomic. Creating it at path
// and then chmodding would leave it open to every local user, for as long
// as the umask allows, between the two calls. A process-wide umask change
// around Listen would race with other goroutines creating files.
func listenPrivate(path string) (*net.UnixListener, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".lanmesh-sock-") // 0700
	if err != nil {
		return nil, fmt.Errorf("local API socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	tmpSock := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpSock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("local API socket: %w", err)
	}
	// The listener would unlink tmpSock on Close; Server.Close removes path.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmpSock, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("local API socket: %w", err)
	}
	if listenHook != nil {
		listenHook(tmpSock, path)
	}
	if err := os.Rename(tmpSock, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("local API socket: %w", err)
	}
	return ln, nil
}
