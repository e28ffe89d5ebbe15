package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
)

// startLanmesh brings up the real thing through the testbed: coord on the
// internet, agents on both routers, LAN routes advertised, approved and
// accepted. The mesh device is whatever the agent routes the far LAN to.
func startLanmesh(ctx context.Context, s *testbed.Standard, binDir string, log *slog.Logger) (*dataPlane, error) {
	if binDir != "" {
		// The testbed finds the binaries here instead of building its own.
		os.Setenv("LANMESH_BIN_DIR", binDir)
	}
	m, err := testbed.StartMesh(ctx, s, func(format string, args ...any) {
		log.Info("bench: mesh: " + fmt.Sprintf(format, args...))
	})
	if err != nil {
		return nil, err
	}
	devA, err := meshDev(ctx, s.RouterA, testbed.B1IP)
	if err != nil {
		return nil, err
	}
	devB, err := meshDev(ctx, s.RouterB, testbed.A1IP)
	if err != nil {
		return nil, err
	}
	return &dataPlane{
		mode:   ModeLanmesh,
		note:   fmt.Sprintf("coord + agents via the testbed, routes approved and accepted (mesh device %s)", devA),
		routeA: []string{"dev", devA},
		routeB: []string{"dev", devB},
		devA:   devA,
		devB:   devB,
		procs:  []*testbed.Proc{m.A.Proc, m.B.Proc},
		rssOf:  "lanmesh agent",
		path: func(ctx context.Context) (string, error) {
			st, err := m.A.Status(ctx)
			if err != nil {
				return "", err
			}
			p := st.Peer("router-b")
			if p == nil {
				return "", fmt.Errorf("router-a's status lists no router-b")
			}
			return fmt.Sprintf("%s %s", p.Path, p.Endpoint), nil
		},
	}, nil
}

// meshDev waits until the agent on h routes dst somewhere other than the
// WAN and returns that device.
func meshDev(ctx context.Context, h *testbed.Host, dst string) (string, error) {
	var dev string
	err := waitFor(ctx, 15*time.Second, func() error {
		r, err := h.Run(ctx, "ip", "-o", "route", "get", dst)
		if err != nil {
			return err
		}
		f := strings.Fields(r.Stdout)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "dev" && f[i+1] != "wan0" {
				dev = f[i+1]
				return nil
			}
		}
		return fmt.Errorf("%s still routes %s as %q", h.Name, dst, strings.TrimSpace(r.Stdout))
	})
	if err != nil {
		return "", fmt.Errorf("agent route for %s: %w", dst, err)
	}
	return dev, nil
}
