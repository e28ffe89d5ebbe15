package firewall

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is our table in the inet family; nothing else is ours.
const TableName = "lanmesh"

// Config is the desired rule set.
type Config struct {
	MeshIface string // the mesh TUN
	// SNAT masquerades mesh traffic forwarded to a LAN (LAN hosts answer
	// the router) and LAN traffic forwarded into the mesh (the far side
	// sees the router's mesh address).
	SNAT bool
}

// Firewall writes the table. Its methods must run in the target network
// namespace: a netlink socket is opened per update.
type Firewall struct {
	log *slog.Logger
}

func New(log *slog.Logger) *Firewall {
	return &Firewall{log: log.With("component", "firewall")}
}

func table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
}

// Set replaces the table's contents with cfg's rules in one netlink batch:
// the kernel applies all of it or none, and no packet sees a half-built
// table. Identity ACLs will come as sets and verdict maps in this same
// batch, so the rule count stays flat as peers grow.
func (f *Firewall) Set(cfg Config) error {
	if cfg.MeshIface == "" || len(cfg.MeshIface) >= unix.IFNAMSIZ {
		return fmt.Errorf("firewall: invalid mesh interface name %q", cfg.MeshIface)
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("firewall: open netlink: %w", err)
	}
	t := table()
	// Add first so the delete cannot fail on a missing table, then
	// recreate: one transaction.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)

	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})

	mesh := cfg.MeshIface
	for _, r := range forwardRules(mesh) {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: r})
	}
	if cfg.SNAT {
		for _, r := range snatRules(mesh) {
			c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: r})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("firewall: replace table inet %s: %w", TableName, err)
	}
	f.log.Debug("rules applied", "mesh", mesh, "snat", cfg.SNAT)
	return nil
}

// Close deletes the table: removing the agent leaves no rules.
func (f *Firewall) Close() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("firewall: open netlink: %w", err)
	}
	c.DelTable(table())
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("firewall: delete table inet %s: %w", TableName, err)
	}
	return nil
}

// forwardRules: clamp the MSS of TCP SYNs entering or leaving the mesh to
// the route MTU (the mesh MTU is below the LAN's, and PMTU discovery
// through tunnels often fails), then accept mesh<->LAN forwarding.
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
		join(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, mesh), verdict(expr.VerdictAccept)),
		join(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, mesh), verdict(expr.VerdictAccept)),
	}
}

func snatRules(mesh string) [][]expr.Any {
	return [][]expr.Any{
		// mesh -> LAN: LAN hosts need no route back into the mesh.
		join(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, mesh), ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, mesh), masq()),
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

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func join(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
