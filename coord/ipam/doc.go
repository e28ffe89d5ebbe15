// Package ipam maps a node's host number to its mesh addresses: IPv4 from
// 100.64.0.0/10 and IPv6 from the mesh's ULA /48, same host number in both.
// It does no storage; coord/store picks the numbers inside a transaction.
package ipam
