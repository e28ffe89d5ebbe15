//go:build !linux

package sockmark

import "syscall"

// Control does nothing off Linux: there is no SO_MARK, and exit-node use
// (the only reader of the mark) is Linux-only.
func Control(network, address string, c syscall.RawConn) error { return nil }
