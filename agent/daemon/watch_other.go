//go:build !linux

package daemon

import "context"

// watchNetlink has no event source off Linux; the refresher polls.
func watchNetlink(ctx context.Context, meshIf string, notify func()) error { return nil }
