// Package fwbench measures agent/firewall on generated meshes: nft rule
// count and update time for 10 to 1000 peers under a 50-rule policy. It
// compiles policies with coord/policy, so the router binary never links it.
package fwbench
