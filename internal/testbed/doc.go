// Package testbed builds throwaway worlds of Linux network namespaces (hosts, veth links, an "internet" bridge, home LANs, nftables NAT boxes) and runs real lanmesh binaries inside them.
// It only ever creates, uses and deletes its own namespaces (prefix lmtb<pid>x<n>) and addresses from 198.18.0.0/15 and 2001:db8::/32; it never touches the host's interfaces, routes or firewall.
// It is for tests, the demo and benchmarks: needs root (SkipUnlessRoot), and everything it makes is removed on Close, by t.Cleanup, and by the stale sweep in Open.
package testbed
