// Package dns is the agent's mesh DNS server: it answers mesh names and mesh PTRs from the latest netmap snapshot and forwards everything else upstream, only for allowed clients.
// It also renders the dnsmasq lines that hand the mesh domain to it and reads DHCP leases and resolv.conf (read-only); it never edits the router's resolver config.
// Wiring to the netmap, listen addresses and the daemon's lifecycle belong to the caller.
package dns
