//go:build !linux

package server

import "net"

// socketPeer: peer credentials are read on Linux only.
func socketPeer(net.Conn) string { return "" }
