package testbed

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// Mesh is the standard topology with coord running and both routers
// joined, advertising their LANs, with the routes approved.
type Mesh struct {
	*Standard
	Coord  *Coord
	A, B   *Agent
	Keys   map[string]string // auth key per node name (secrets: never log them)
	Joined map[string]time.Duration
	// Laptops are the agents AddLaptop started, by name.
	Laptops map[string]*Agent

	mu          sync.Mutex // guards Keys, Joined, Laptops once StartMesh returned
	laptopOrder []*Agent
	say         Narrate
}

// Narrate receives one line per finished step (the demo prints them,
// tests t.Logf them); nil is fine.
type Narrate func(format string, args ...any)

// MeshOptions tune StartMeshWith.
type MeshOptions struct {
	// Verbose runs coord with --verbose and agents with --log-level
	// debug, so that log checks (S11) see everything the programs can log.
	Verbose bool
	// BeforeJoin runs once coord is healthy and before any router joins:
	// users and a policy go in here so the routers join under them.
	BeforeJoin func(ctx context.Context, c *Coord) error
	// KeyArgs are extra `keys create` flags per router name (e.g.
	// --user U --tag tag:router).
	KeyArgs map[string][]string
	// CoordArgs are extra `lanmesh-coord serve` flags.
	CoordArgs []string
	// AgentArgs are extra `lanmesh agent` flags per router name (e.g.
	// --config FILE for the DNS keys).
	AgentArgs map[string][]string
}

// StartMesh brings up coord and both routers on s, step by step.
func StartMesh(ctx context.Context, s *Standard, say Narrate) (*Mesh, error) {
	return StartMeshWith(ctx, s, say, MeshOptions{})
}

// StartMeshWith is StartMesh with options.
func StartMeshWith(ctx context.Context, s *Standard, say Narrate, opt MeshOptions) (*Mesh, error) {
	var coordArgs, agentArgs []string
	if opt.Verbose {
		coordArgs, agentArgs = []string{"--verbose"}, []string{"--log-level", "debug"}
	}
	coordArgs = append(coordArgs, opt.CoordArgs...)
	if say == nil {
		say = func(string, ...any) {}
	}
	m := &Mesh{Standard: s, Keys: map[string]string{}, Joined: map[string]time.Duration{}, Laptops: map[string]*Agent{}, say: say}
	t0 := time.Now()
	var err error
	if m.Coord, err = StartCoord(ctx, s.Coord, s.CoordAddr(), coordArgs...); err != nil {
		return m, fmt.Errorf("start coord: %w", err)
	}
	say("coord serving at %s, healthy after %s", m.Coord.URL, ms(time.Since(t0)))
	if opt.BeforeJoin != nil {
		if err := opt.BeforeJoin(ctx, m.Coord); err != nil {
			return m, fmt.Errorf("before join: %w", err)
		}
	}

	for _, r := range []struct {
		agent **Agent
		host  *Host
		name  string
		lan   string
	}{{&m.A, s.RouterA, "router-a", LANA}, {&m.B, s.RouterB, "router-b", LANB}} {
		t := time.Now()
		k, err := m.Coord.CreateKey(ctx, opt.KeyArgs[r.name]...)
		if err != nil {
			return m, fmt.Errorf("create auth key for %s: %w", r.name, err)
		}
		m.Keys[r.name] = k
		if pk, err := wire.ParseAuthKey(k); err == nil {
			say("auth key %s created for %s", pk.Redacted(), r.name)
		}
		a, err := StartAgent(ctx, r.host, r.name, append(append([]string(nil), agentArgs...), opt.AgentArgs[r.name]...)...)
		if err != nil {
			return m, fmt.Errorf("start agent %s: %w", r.name, err)
		}
		*r.agent = a
		if _, err := a.Up(ctx, m.Coord, k, "--advertise-routes", r.lan, "--accept-routes"); err != nil {
			return m, fmt.Errorf("%s: lanmesh up: %w", r.name, err)
		}
		st, err := a.Status(ctx)
		if err != nil {
			return m, fmt.Errorf("%s: status after up: %w", r.name, err)
		}
		m.Joined[r.name] = time.Since(t)
		say("%s joined in %s as %s (%s)", r.name, ms(time.Since(t)), st.Self.Name, st.Self.IPv4())
	}
	for _, r := range []struct{ name, lan string }{{"router-a", LANA}, {"router-b", LANB}} {
		if _, err := m.Coord.Admin(ctx, "routes", "approve", r.name, r.lan); err != nil {
			return m, fmt.Errorf("approve %s for %s: %w", r.lan, r.name, err)
		}
		say("route %s of %s approved", r.lan, r.name)
	}
	t := time.Now()
	for _, c := range []struct {
		a         *Agent
		peer, lan string
	}{{m.A, "router-b", LANB}, {m.B, "router-a", LANA}} {
		if _, err := c.a.WaitStatus(ctx, fmt.Sprintf("peer %s with route %s", c.peer, c.lan), func(s *Status) bool {
			p := s.Peer(c.peer)
			return p != nil && p.HasRoute(c.lan)
		}); err != nil {
			return m, err
		}
	}
	say("both routers see each other's approved LAN after %s", ms(time.Since(t)))
	return m, nil
}

// Agents returns the routers' agents, then the laptops' in join order.
func (m *Mesh) Agents() []*Agent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Agent{m.A, m.B}, m.laptopOrder...)
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
