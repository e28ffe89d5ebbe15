// Package kernelhint turns the kernel's terse refusals (socket: protocol
// not supported, no such device) into errors that say which kernel
// modules or packages to install, on OpenWrt and on Debian-like systems.
// It only explains: the original error stays wrapped (errors.Is works),
// and errors it does not recognise pass through unchanged.
package kernelhint

import (
	"errors"
	"fmt"
	"syscall"
)

// Feature is the kernel feature an operation needed.
type Feature int

const (
	// NFTables: the agent's firewall and SNAT (netlink NETLINK_NETFILTER).
	NFTables Feature = iota
	// TUN: the mesh interface (/dev/net/tun).
	TUN
)

// Hints name what to install; they are the docs' text too (docs/cli.md).
const (
	NFTablesHint = "the kernel has no nftables: load the modules nfnetlink, nf_tables, nft_chain_nat, nft_nat, nft_masq, nft_ct and nft_exthdr " +
		"(OpenWrt: opkg install kmod-nft-core kmod-nft-nat; Debian/Ubuntu: modprobe nf_tables nft_chain_nat nft_masq, " +
		"they ship with linux-image-*; a custom kernel needs CONFIG_NF_TABLES, CONFIG_NF_TABLES_INET, CONFIG_NFT_NAT, CONFIG_NFT_MASQ, CONFIG_NFT_CT)"
	NFTablesExprHint = "the kernel's nftables lacks an expression the agent uses: load nft_chain_nat, nft_nat, nft_masq, nft_ct and nft_exthdr " +
		"(OpenWrt: opkg install kmod-nft-core kmod-nft-nat; Debian/Ubuntu: modprobe nft_chain_nat nft_masq nft_ct nft_exthdr)"
	TUNHint = "the kernel has no TUN device: load the tun module " +
		"(OpenWrt: opkg install kmod-tun; Debian/Ubuntu: modprobe tun; in a container pass --device /dev/net/tun; a custom kernel needs CONFIG_TUN)"
	PermHint = "the agent needs root (CAP_NET_ADMIN) for the mesh interface and the firewall"
)

// Explain returns err with a hint naming what to install when err is one
// of the refusals a kernel without feature f gives; otherwise err itself.
func Explain(f Feature, err error) error {
	if err == nil {
		return nil
	}
	var hint string
	switch {
	case errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES):
		hint = PermHint
	case f == NFTables && errors.Is(err, syscall.EPROTONOSUPPORT):
		// socket(AF_NETLINK, ..., NETLINK_NETFILTER) without nfnetlink.
		hint = NFTablesHint
	case f == NFTables && (errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EAFNOSUPPORT)):
		// nfnetlink is there but nf_tables or an expression module is not.
		hint = NFTablesExprHint
	case f == TUN && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENXIO)):
		hint = TUNHint
	default:
		return err
	}
	return &hinted{err: err, hint: hint}
}

type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return fmt.Sprintf("%v: %s", h.err, h.hint) }
func (h *hinted) Unwrap() error { return h.err }
