// Package bench measures lanmesh and writes the results as markdown tables
// under bench/results/: binary sizes against the router budget, and TCP
// throughput and memory against plain routing and stock wireguard-go.
package bench
