// Package bench measures lanmesh and writes the results as markdown tables
// under bench/results/: binary sizes against the router budget, TCP throughput
// and memory against plain routing and stock wireguard-go, firewall updates,
// DNS queries/s against dnsmasq and coord's policy fan-out at scale.
package bench
