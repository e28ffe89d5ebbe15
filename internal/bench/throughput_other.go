//go:build !linux

package bench

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// ThroughputOptions configure RunThroughput.
type ThroughputOptions struct {
	BinDir   string
	Reps     int
	Duration time.Duration
	Modes    []string
	Log      *slog.Logger
}

// RunThroughput needs Linux network namespaces.
func RunThroughput(context.Context, ThroughputOptions) (*ThroughputResult, error) {
	return nil, errors.New("throughput: needs Linux network namespaces")
}
