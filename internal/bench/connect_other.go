//go:build !linux

package bench

import (
	"context"
	"errors"
	"log/slog"
)

// ConnectOptions configure RunConnect.
type ConnectOptions struct {
	BinDir string
	Reps   int
	Log    *slog.Logger
}

// RunConnect needs Linux network namespaces.
func RunConnect(context.Context, ConnectOptions) (*ConnectResult, error) {
	return nil, errors.New("connect: needs Linux network namespaces")
}
