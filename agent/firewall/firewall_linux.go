package firewall

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/lanmesh/lanmesh/agent/kernelhint"
)

// Firewall writes the table. Its methods must run in the target network
// namespace: a netlink socket is opened per update.
type Firewall struct {
	log   *slog.Logger
	built *shape // what the kernel holds; nil: unknown, rebuild
	plan  *plan  // the sets' contents in the kernel when built is set
}

func New(log *slog.Logger) *Firewall {
	return &Firewall{log: log.With("component", "firewall")}
}

func table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
}

// Set replaces the table's contents with cfg's rules in one netlink batch:
// the kernel applies all of it or none, and no packet sees a half-built
// table (or a moment without one). The identity filter lives in sets,
// so the rule count is the same for 2 peers or 10,000.
func (f *Firewall) Set(cfg Config) error {
	if cfg.MeshIface == "" || len(cfg.MeshIface) >= unix.IFNAMSIZ {
		return fmt.Errorf("firewall: invalid mesh interface name %q", cfg.MeshIface)
	}
	p, err := buildPlan(cfg)
	if err != nil {
		return err
	}
	sh := shape{mesh: cfg.MeshIface, snat: cfg.SNAT, exitMasq: exitMasqKey(cfg)}
	if f.built != nil && *f.built == sh {
		// Only the filter changed: swap set elements, keep chains.
		// Recreating base chains re-registers their hooks, and new
		// connections were seen to lose a packet to that (about 1 in
		// 1,500 during back-to-back updates); element swaps lost none.
		if err = f.apply(func(c *nftables.Conn) error { return fillSets(c, table(), p, f.plan) }); err == nil {
			f.plan = p
			f.log.Debug("filter updated", "elements", p.count())
			return nil
		}
		// The table may have been removed behind our back (nft flush
		// ruleset): rebuild it whole.
		f.log.Warn("filter update failed, rebuilding table", "err", err)
	}
	f.built, f.plan = nil, nil
	if err := f.apply(func(c *nftables.Conn) error { return f.rebuild(c, cfg, p) }); err != nil {
		return err
	}
	f.built, f.plan = &sh, p
	f.log.Debug("rules applied", "mesh", cfg.MeshIface, "snat", cfg.SNAT, "filter", cfg.Filter != nil, "elements", p.count())
	return nil
}

// shape is what fixes the table's chains and rules; the filter only
// fills sets.
type shape struct {
	mesh     string
	snat     bool
	exitMasq string // exitMasqKey: the subnets exempt from exit masquerade
}

// apply runs one netlink transaction.
func (f *Firewall) apply(batch func(*nftables.Conn) error) error {
	c, err := nftables.New()
	if err != nil {
		return kernelhint.Explain(kernelhint.NFTables, fmt.Errorf("firewall: open netlink: %w", err))
	}
	if err := batch(c); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return kernelhint.Explain(kernelhint.NFTables, fmt.Errorf("firewall: replace table inet %s: %w", TableName, err))
	}
	return nil
}

func (f *Firewall) rebuild(c *nftables.Conn, cfg Config, p *plan) error {
	t := table()
	// Add first so the delete cannot fail on a missing table, then
	// recreate: one transaction.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)

	if err := addFilter(c, t, p); err != nil {
		return err
	}
	accept := nftables.ChainPolicyAccept
	in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})

	mesh := cfg.MeshIface
	c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: join(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, mesh), jump(chainNames[chainMeshIn]))})
	for _, r := range forwardRules(mesh) {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: r})
	}
	if cfg.SNAT {
		for _, r := range snatRules(mesh) {
			c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: r})
		}
	} else if exitNode(cfg) {
		for _, r := range exitMasqRules(mesh, cfg.AdvertisedRoutes) {
			c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: r})
		}
	}
	return nil
}

// Close deletes the table: removing the agent leaves no rules.
func (f *Firewall) Close() error {
	c, err := nftables.New()
	if err != nil {
		return kernelhint.Explain(kernelhint.NFTables, fmt.Errorf("firewall: open netlink: %w", err))
	}
	f.built, f.plan = nil, nil
	c.DelTable(table())
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("firewall: delete table inet %s: %w", TableName, err)
	}
	return nil
}

// forwardRules: clamp the MSS of TCP SYNs entering or leaving the mesh to
// the route MTU (the mesh MTU is below the LAN's, and PMTU discovery
// through tunnels often fails), then send mesh<->LAN forwarding through
// the identity filter.
func forwardRules(mesh string) [][]expr.Any {
	clamp := func(key expr.MetaKey) []expr.Any {
		return join(ifname(key, expr.CmpOpEq, mesh), tcpSYN(), []expr.Any{
			&expr.Rt{Register: 1, Key: expr.RtTCPMSS},
			&expr.Exthdr{SourceRegister: 1, Type: 2 /* maxseg */, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
		})
	}
	return [][]expr.Any{
		clamp(expr.MetaKeyOIFNAME),
		clamp(expr.MetaKeyIIFNAME),
		join(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, mesh), jump(chainNames[chainMeshToLAN])),
		join(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, mesh), jump(chainNames[chainLANToMesh])),
	}
}

func snatRules(mesh string) [][]expr.Any {
	return [][]expr.Any{
		// mesh -> LAN: LAN hosts need no route back into the mesh. Not
		// to loopback: a tunnel device's own encapsulated packets leave
		// with the device as their input interface, and the kernel
		// WireGuard backend sends them to the agent's loopback sockets;
		// masquerading those would change their source, so the agent's
		// connected socket would never see them (issue 17).
		join(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, mesh), ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, mesh),
			ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, "lo"), masq()),
		// LAN -> mesh: only forwarded traffic (the router's own packets have
		// no input interface, so the iifname match fails for them).
		join(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, mesh), ifname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, mesh), masq()),
	}
}

func ifname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: b}}
}

func tcpSYN() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x02 | 0x04}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}}, // SYN without RST
	}
}

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func join(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Stats counts, from the kernel, the rules in our table and the
// elements in its sets: what the benchmark reports to show the rule
// count stays flat while the sets grow.
func (f *Firewall) Stats() (rules, elements int, err error) {
	c, err := nftables.New()
	if err != nil {
		return 0, 0, fmt.Errorf("firewall: open netlink: %w", err)
	}
	t := table()
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return 0, 0, fmt.Errorf("firewall: list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		rs, err := c.GetRules(t, ch)
		if err != nil {
			return 0, 0, fmt.Errorf("firewall: list rules of %s: %w", ch.Name, err)
		}
		rules += len(rs)
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return 0, 0, fmt.Errorf("firewall: list sets: %w", err)
	}
	for _, s := range sets {
		es, err := c.GetSetElements(s)
		if err != nil {
			return 0, 0, fmt.Errorf("firewall: list set %s: %w", s.Name, err)
		}
		elements += len(es)
	}
	return rules, elements, nil
}
