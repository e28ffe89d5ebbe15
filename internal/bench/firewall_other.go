//go:build !linux

package bench

import (
	"context"
	"errors"
	"io"
)

// FirewallResult is empty off Linux: nftables is Linux-only.
type FirewallResult struct{ Env Env }

// RunFirewall needs Linux (nftables and network namespaces).
func RunFirewall(context.Context) (*FirewallResult, error) {
	return nil, errors.New("firewall bench: needs Linux")
}

// Failed is never reached off Linux.
func (r *FirewallResult) Failed() []string { return nil }

// WriteFirewallReport has nothing to write off Linux.
func WriteFirewallReport(io.Writer, *FirewallResult) error {
	return errors.New("firewall bench: needs Linux")
}
