//go:build !linux

package bench

import (
	"context"
	"errors"
)

// RunRevocation needs Linux network namespaces.
func RunRevocation(ctx context.Context, opt RevocationOptions) *RevocationResult {
	opt.defaults()
	return &RevocationResult{Env: CurrentEnv(), Opts: opt, Errs: []string{errors.New("revocation: needs Linux (network namespaces)").Error()}}
}
