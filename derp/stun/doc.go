// Package stun is the RFC 5389 subset lanmesh needs: the Binding request
// and response codec, a UDP server that tells clients their mapped address,
// and a client helper for netcheck. No TURN, ICE or authentication.
package stun
