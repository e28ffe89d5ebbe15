// Command lanmesh-bench runs lanmesh's benchmarks and writes markdown tables
// under bench/results/ (`make bench` runs it after `make build`). It measures
// built binaries and real processes in throwaway namespaces, never the host.
package main
