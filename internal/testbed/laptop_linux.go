package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// laptopNet is where laptops sit on the simulated internet: 198.18.3.0/24
// inside the internet's 198.18.0.0/17, away from coord (.0.2) and the
// routers' WANs (.1.2, .2.2).
const laptopNet = "198.18.3."

// AddLaptop makes a "laptop": a namespace of its own on the simulated
// internet (198.18.3.<n>, no NAT, no LAN) running a lanmesh agent that
// joins through coord with a key made with keyArgs (e.g. --user U, --tag
// tag:iot) and accepts routes. It waits for the first netmap (`up`
// returns then) and returns the agent, also kept in m.Laptops.
func (m *Mesh) AddLaptop(ctx context.Context, name string, n int, keyArgs []string, agentArgs ...string) (*Agent, error) {
	if n < 1 || n > 254 {
		return nil, fmt.Errorf("testbed: laptop %s: host number %d outside 1-254", name, n)
	}
	h, err := m.World.AddHost(name)
	if err != nil {
		return nil, err
	}
	if err := m.onInternet(h, "eth0", fmt.Sprintf("%s%d", laptopNet, n), fmt.Sprintf("2001:db8::3:%d", n)); err != nil {
		return nil, fmt.Errorf("laptop %s: %w", name, err)
	}
	k, err := m.Coord.CreateKey(ctx, keyArgs...)
	if err != nil {
		return nil, fmt.Errorf("create auth key for %s: %w", name, err)
	}
	m.mu.Lock()
	m.Keys[name] = k
	m.mu.Unlock()
	t := time.Now()
	a, err := StartAgent(ctx, h, name, agentArgs...)
	if err != nil {
		return nil, fmt.Errorf("start agent %s: %w", name, err)
	}
	m.mu.Lock()
	if m.Laptops == nil {
		m.Laptops = map[string]*Agent{}
	}
	m.Laptops[name] = a
	m.laptopOrder = append(m.laptopOrder, a)
	m.mu.Unlock()
	if _, err := a.Up(ctx, m.Coord, k, "--accept-routes"); err != nil {
		return a, fmt.Errorf("%s: lanmesh up: %w", name, err)
	}
	m.mu.Lock()
	m.Joined[name] = time.Since(t)
	m.mu.Unlock()
	if pk, err := wire.ParseAuthKey(k); err == nil {
		m.say("laptop %s (%s%d) joined in %s with key %s", name, laptopNet, n, ms(time.Since(t)), pk.Redacted())
	}
	return a, nil
}

// MeshIP returns the agent's first IPv4 mesh address from its status.
func (a *Agent) MeshIP(ctx context.Context) (string, error) {
	st, err := a.Status(ctx)
	if err != nil {
		return "", err
	}
	ip := st.Self.IPv4()
	if _, err := netip.ParseAddr(ip); err != nil {
		return "", fmt.Errorf("%s: no IPv4 mesh address in status (addresses %v)", a.Name, st.Self.Addresses)
	}
	return ip, nil
}
