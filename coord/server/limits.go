package server

import (
	"fmt"
	"net/http"
	"time"
)

// Limits bound what coord spends on clients (S18). Zero fields take the
// defaults below, chosen so a 1 GiB VPS survives a flood from a handful of
// addresses; docs/limits.md explains each one.
type Limits struct {
	// ChallengeRate and ChallengeBurst: GET /v1/challenge and /healthz per
	// source address (IPv6: per /64). Default 20/s, burst 60.
	ChallengeRate  float64
	ChallengeBurst int
	// MachineChallengeRate and MachineChallengeBurst: a machine coord knows
	// (its agent names its key in the Lanmesh-Machine header) gets this
	// budget of its own once its address's is spent, so an attacker behind
	// the same address cannot starve it. Default 1/s, burst 10.
	MachineChallengeRate  float64
	MachineChallengeBurst int
	// RegisterRate and RegisterBurst: signed requests from machine keys
	// coord does not know (first registrations), per source address.
	// Known machines are not counted. Default 2/s, burst 20.
	RegisterRate  float64
	RegisterBurst int
	// AdminRate and AdminBurst: requests to the HTTPS admin API
	// (/api/v1/admin/, API keys) per source address, counted before the
	// key is looked up, so a client guessing keys costs coord a bounded
	// number of store reads. Default 5/s, burst 50.
	AdminRate  float64
	AdminBurst int
	// SourceTable bounds the addresses tracked per budget (least recently
	// seen evicted). Default 16384.
	SourceTable int
	// KnownMachines bounds the replay cache in machines and
	// NoncesPerMachine per machine. Defaults 65536 and 16.
	KnownMachines    int
	NoncesPerMachine int

	// MaxConns caps open node-API connections (TLS included): past it new
	// connections wait in the kernel's backlog. MaxConnsPerSource caps
	// them per source address; past it new ones are closed at once.
	// Defaults 2048 and 256.
	MaxConns          int
	MaxConnsPerSource int
	// MaxStreams caps open netmap streams (503 past it), and
	// MaxStreamsPerNode per node (a new stream ends the node's oldest).
	// Defaults 4096 and 2.
	MaxStreams        int
	MaxStreamsPerNode int
	// HeaderTimeout bounds the TLS handshake and request headers,
	// BodyTimeout reading a request body, WriteTimeout writing an answer
	// (netmap streams instead bound each write, to 2 keep-alives),
	// IdleTimeout a kept-alive connection between requests. Defaults 10 s,
	// 10 s, 30 s, 90 s.
	HeaderTimeout time.Duration
	BodyTimeout   time.Duration
	WriteTimeout  time.Duration
	IdleTimeout   time.Duration
	// MaxHeaderBytes caps request headers. Default 16 KiB. Bodies are
	// capped at wire.MaxRequestBytes (64 KiB).
	MaxHeaderBytes int
	// MaxConcurrentStreams caps HTTP/2 requests in flight on one
	// connection. Default 32.
	MaxConcurrentStreams int
}

// DefaultLimits are the limits a zero Limits gets.
var DefaultLimits = Limits{
	ChallengeRate: 20, ChallengeBurst: 60,
	MachineChallengeRate: 1, MachineChallengeBurst: 10,
	RegisterRate: 2, RegisterBurst: 20,
	AdminRate: 5, AdminBurst: 50,
	SourceTable:   16384,
	KnownMachines: 65536, NoncesPerMachine: 16,
	MaxConns: 2048, MaxConnsPerSource: 256,
	MaxStreams: 4096, MaxStreamsPerNode: 2,
	HeaderTimeout: 10 * time.Second, BodyTimeout: 10 * time.Second,
	WriteTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second,
	MaxHeaderBytes:       16 << 10,
	MaxConcurrentStreams: 32,
}

// withDefaults fills zero fields and refuses negative ones.
func (l Limits) withDefaults() (Limits, error) {
	d := DefaultLimits
	var bad string
	f := func(v *float64, def float64, name string) {
		if *v < 0 {
			bad = name
		} else if *v == 0 {
			*v = def
		}
	}
	i := func(v *int, def int, name string) {
		if *v < 0 {
			bad = name
		} else if *v == 0 {
			*v = def
		}
	}
	t := func(v *time.Duration, def time.Duration, name string) {
		if *v < 0 {
			bad = name
		} else if *v == 0 {
			*v = def
		}
	}
	f(&l.ChallengeRate, d.ChallengeRate, "challenge rate")
	i(&l.ChallengeBurst, d.ChallengeBurst, "challenge burst")
	f(&l.MachineChallengeRate, d.MachineChallengeRate, "machine challenge rate")
	i(&l.MachineChallengeBurst, d.MachineChallengeBurst, "machine challenge burst")
	f(&l.RegisterRate, d.RegisterRate, "register rate")
	i(&l.RegisterBurst, d.RegisterBurst, "register burst")
	f(&l.AdminRate, d.AdminRate, "admin API rate")
	i(&l.AdminBurst, d.AdminBurst, "admin API burst")
	i(&l.SourceTable, d.SourceTable, "source table size")
	i(&l.KnownMachines, d.KnownMachines, "known machines")
	i(&l.NoncesPerMachine, d.NoncesPerMachine, "nonces per machine")
	i(&l.MaxConns, d.MaxConns, "max connections")
	i(&l.MaxConnsPerSource, d.MaxConnsPerSource, "max connections per source")
	i(&l.MaxStreams, d.MaxStreams, "max streams")
	i(&l.MaxStreamsPerNode, d.MaxStreamsPerNode, "max streams per node")
	t(&l.HeaderTimeout, d.HeaderTimeout, "header timeout")
	t(&l.BodyTimeout, d.BodyTimeout, "body timeout")
	t(&l.WriteTimeout, d.WriteTimeout, "write timeout")
	t(&l.IdleTimeout, d.IdleTimeout, "idle timeout")
	i(&l.MaxHeaderBytes, d.MaxHeaderBytes, "max header bytes")
	i(&l.MaxConcurrentStreams, d.MaxConcurrentStreams, "max concurrent HTTP/2 streams")
	if bad != "" {
		return l, fmt.Errorf("server limits: %s is negative", bad)
	}
	return l, nil
}

// deadlines gives every request a body-read and a write deadline, so a
// client that dribbles its body or never reads the answer holds its
// connection for a bounded time. They are per request, not the
// http.Server's ReadTimeout/WriteTimeout, which would also cut the
// long-lived netmap stream; the stream lifts the read deadline once its
// body is read and bounds each write itself.
func (s *Server) deadlines(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		now := time.Now()
		rc.SetReadDeadline(now.Add(s.lim.BodyTimeout))
		rc.SetWriteDeadline(now.Add(s.lim.WriteTimeout))
		h.ServeHTTP(w, r)
	})
}
