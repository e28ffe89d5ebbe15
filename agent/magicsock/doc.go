// Package magicsock is the agent's conn.Bind: one UDP socket per address family shared by
// WireGuard and (through a demux hook) disco and STUN, with recvmmsg/sendmmsg and UDP GSO/GRO.
// It knows nothing of peers or paths; choosing endpoints is the engine's (later disco's) job.
package magicsock
