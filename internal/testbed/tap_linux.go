package testbed

// AddTap makes a tap device in h's namespace, for a VM's NIC (QEMU started
// in h with -netdev tap,ifname=...), brings it up and adds addrs. It dies
// with the namespace, so a VM never touches a host interface.
func (h *Host) AddTap(ifname string, addrs ...string) error {
	if err := checkIfName(ifname); err != nil {
		return err
	}
	if err := h.ip("tuntap", "add", "dev", ifname, "mode", "tap"); err != nil {
		return err
	}
	if err := h.AddAddr(ifname, addrs...); err != nil {
		return err
	}
	return h.ip("link", "set", ifname, "up")
}

// AttachTap makes a tap device on the segment's bridge, so a VM started in
// the segment's host (s.Host) with that tap sits on the segment.
func (s *Segment) AttachTap(ifname string) error {
	if err := s.Host.AddTap(ifname); err != nil {
		return err
	}
	return s.Host.ip("link", "set", ifname, "master", s.Bridge)
}
