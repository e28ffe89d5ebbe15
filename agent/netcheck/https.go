package netcheck

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// httpsLatencies measures, per region, the TCP connect time to its first
// reachable relay node, after the TLS handshake proved it is that relay
// (pinned fingerprint or system roots). The connect time is one round
// trip, comparable with a STUN RTT; the handshake only guards against a
// middlebox answering TCP in the relay's place.
func (c *Checker) httpsLatencies(ctx context.Context, regions []wire.DERPRegion) map[int]time.Duration {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HTTPSTimeout)
	defer cancel()
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = map[int]time.Duration{}
	)
	for _, reg := range regions {
		wg.Go(func() {
			for _, n := range reg.Nodes {
				d, err := relayLatency(ctx, c.cfg.Dial, n)
				if err != nil {
					c.log.Debug("netcheck: relay latency", "region", reg.ID, "node", n.Name, "err", err)
					continue
				}
				mu.Lock()
				out[reg.ID] = d
				mu.Unlock()
				return
			}
		})
	}
	wg.Wait()
	return out
}

func relayLatency(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), n wire.DERPNode) (time.Duration, error) {
	u, err := url.Parse(n.URL())
	if err != nil {
		return 0, err
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	host := net.JoinHostPort(u.Hostname(), port)
	// Dial the map's address when it has one: no DNS needed.
	if n.IPv4.IsValid() {
		host = net.JoinHostPort(n.IPv4.String(), port)
	} else if n.IPv6.IsValid() {
		host = net.JoinHostPort(n.IPv6.String(), port)
	}
	start := time.Now()
	conn, err := dial(ctx, "tcp", host)
	if err != nil {
		return 0, fmt.Errorf("connect %s: %w", host, err)
	}
	rtt := time.Since(start)
	defer conn.Close()
	cfg := &tls.Config{ServerName: n.HostName, NextProtos: []string{"http/1.1"}}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	if n.CertFingerprint != "" {
		fp, err := wire.ParseFingerprint(n.CertFingerprint)
		if err != nil {
			return 0, err
		}
		// The pin replaces CA verification; it is checked right here.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("relay presented no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if !key.Equal(sum[:], fp) {
				return errors.New("relay certificate does not match the pinned fingerprint")
			}
			return nil
		}
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return 0, fmt.Errorf("TLS to %s: %w", host, err)
	}
	return rtt, nil
}
