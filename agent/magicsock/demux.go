package magicsock

// IsWireGuard reports whether pkt starts like a WireGuard message: a type
// byte 1..4 (initiation, response, cookie reply, transport) followed by
// three reserved zero bytes. Everything else on the socket (disco, STUN)
// goes to the Bind's Handler instead of the WireGuard device.
func IsWireGuard(pkt []byte) bool {
	return len(pkt) >= 4 && pkt[0] >= 1 && pkt[0] <= 4 && pkt[1] == 0 && pkt[2] == 0 && pkt[3] == 0
}

// isTransportData reports whether pkt is a WireGuard transport message that
// carries a payload (a keepalive is the 16-byte header plus a 16-byte tag).
func isTransportData(pkt []byte) bool {
	return len(pkt) > 32 && pkt[0] == 4 && pkt[1] == 0 && pkt[2] == 0 && pkt[3] == 0
}

// IsTransportData is isTransportData for the engine's flow control.
func IsTransportData(pkt []byte) bool { return isTransportData(pkt) }
