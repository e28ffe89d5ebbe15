//go:build !linux

package bench

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/lanmesh/lanmesh/internal/vmtest"
)

// VMOptions configure RunVM and RunRouter.
type VMOptions struct {
	BinDir   string
	Reps     int
	Duration time.Duration
	Arches   []vmtest.Arch
	Log      *slog.Logger
}

// RunVM needs Linux (namespaces, tap devices, QEMU).
func RunVM(context.Context, VMOptions) (*VMResult, error) {
	return nil, errors.New("vm: needs Linux network namespaces and QEMU")
}

// RunRouter needs Linux (namespaces, tap devices, QEMU).
func RunRouter(context.Context, VMOptions) (*RouterResult, error) {
	return nil, errors.New("router: needs Linux network namespaces and QEMU")
}
