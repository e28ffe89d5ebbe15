// Package derp is lanmesh's relay: a framed protocol over an upgraded HTTPS
// connection that forwards opaque (WireGuard-encrypted) packets between node keys,
// its server (access control, per-client limits) and client. No routing or NAT logic here.
package derp
