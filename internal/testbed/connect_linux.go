package testbed

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Connect is how a fresh mesh's first LAN-to-LAN connection went, timed
// from the moment both routers had each other's approved LAN in their
// netmap (StartMesh returning): nothing could flow before that.
type Connect struct {
	FirstPacket time.Duration // first a1 -> b1 ping reply
	Direct      time.Duration // router A's path to router B first "direct ..."; 0: never
	Path        string        // router A's path to router B at the end
	PathB       string        // router B's path to router A at the end
	Paths       []string      // every distinct path A reported, in order
}

// MeasureConnect pings a1 -> b1 continuously (so there is traffic for
// disco to upgrade) while polling router A's status. It returns once the
// first reply came and either the path is direct or, when no direct path
// is expected, hold has passed since the first reply without one; or when
// limit passes (an error that says which part never happened).
func MeasureConnect(ctx context.Context, m *Mesh, t0 time.Time, hold, limit time.Duration) (Connect, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var (
		mu    sync.Mutex
		first time.Duration
	)
	pingDone := make(chan struct{})
	go func() {
		defer close(pingDone)
		for ctx.Err() == nil {
			// 200 ms per try: the resolution of FirstPacket.
			if n, _ := m.A1.Ping(ctx, B1IP, 1, 200*time.Millisecond); n == 1 {
				mu.Lock()
				if first == 0 {
					first = time.Since(t0)
				}
				mu.Unlock()
			} else {
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
	}()
	defer func() { cancel(); <-pingDone }()

	var c Connect
	for {
		st, err := m.A.Status(ctx)
		if err == nil {
			if p := st.Peer("router-b"); p != nil {
				if len(c.Paths) == 0 || c.Paths[len(c.Paths)-1] != p.Path {
					c.Paths = append(c.Paths, p.Path)
				}
				c.Path = p.Path
				if c.Direct == 0 && strings.HasPrefix(p.Path, "direct") {
					c.Direct = time.Since(t0)
				}
			}
		}
		mu.Lock()
		c.FirstPacket = first
		mu.Unlock()
		if c.FirstPacket > 0 && (c.Direct > 0 || time.Since(t0) > c.FirstPacket+hold) {
			break
		}
		select {
		case <-ctx.Done():
			if c.FirstPacket == 0 {
				return c, fmt.Errorf("no a1 -> b1 ping reply within %v (paths seen %q)", limit, c.Paths)
			}
			return c, fmt.Errorf("timed out after %v (paths seen %q)", limit, c.Paths)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if st, err := m.B.Status(context.WithoutCancel(ctx)); err == nil {
		if p := st.Peer("router-a"); p != nil {
			c.PathB = p.Path
		}
	}
	return c, nil
}

// WaitPath polls router A's status until its path to router B satisfies
// ok; it returns the path and how long that took.
func WaitPath(ctx context.Context, a *Agent, peer string, ok func(path string) bool) (string, time.Duration, error) {
	start := time.Now()
	var path string
	_, err := a.WaitStatus(ctx, "path to "+peer, func(s *Status) bool {
		if p := s.Peer(peer); p != nil {
			path = p.Path
			return ok(p.Path)
		}
		return false
	})
	if err != nil {
		return path, time.Since(start), fmt.Errorf("%w (last path %q)", err, path)
	}
	return path, time.Since(start), nil
}
