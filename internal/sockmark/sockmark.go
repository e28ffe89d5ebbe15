package sockmark

// Mark is the fwmark on the agent's own sockets, and Mask the bits of it
// that are ours: 0x00770000 within 0x00ff0000, a byte other marks
// (OpenWrt's mwan3, firewall zones) leave alone. agent/router's rule
// "fwmark Mark/Mask lookup main" matches exactly these packets.
const (
	Mark uint32 = 0x00770000
	Mask uint32 = 0x00ff0000
)
