package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/testbed"
)

const wireGoModule = "golang.zx2c4.com/wireguard"

// buildWireGo builds stock wireguard-go's main package at the version
// lanmesh's go.mod requires, into dir. `go install pkg@version` builds
// outside this module, so the project's go.mod is never touched.
func buildWireGo(ctx context.Context, dir string) (bin, version string, err error) {
	version, err = wireGoVersion(ctx)
	if err != nil {
		return "", "", err
	}
	cmd := exec.CommandContext(ctx, "go", "install", wireGoModule+"@"+version)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go install %s@%s: %w\n%s", wireGoModule, version, err, b)
	}
	return filepath.Join(dir, "wireguard"), version, nil
}

// wireGoVersion is the version of wireguard-go that lanmesh's go.mod
// requires.
func wireGoVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", wireGoModule).Output()
	if err != nil {
		return "", fmt.Errorf("find %s in go.mod (run from the repository): %w", wireGoModule, err)
	}
	version := strings.TrimSpace(string(out))
	if version == "" {
		return "", fmt.Errorf("%s has no version in go.mod", wireGoModule)
	}
	return version, nil
}

// startWireGo runs stock wireguard-go on both routers with its default TUN
// offloads and configures it with wg and ip, the way a user would.
func startWireGo(ctx context.Context, s *testbed.Standard, log *slog.Logger) (*dataPlane, error) {
	dir, err := s.StateDir("wireguard-go")
	if err != nil {
		return nil, err
	}
	bin, version, err := buildWireGo(ctx, dir)
	if err != nil {
		return nil, err
	}
	log.Info("bench: built stock wireguard-go", "version", version)

	// The UAPI socket lives in /var/run/wireguard/<ifname>.sock, which all
	// namespaces share: the names must be unique per router and per run.
	tag := fmt.Sprintf("%d", os.Getpid()%100000)
	ifA, ifB := "wgb"+tag+"a", "wgb"+tag+"b"
	const portA, portB = 51821, 51822
	kA, kB := key.NewNode(), key.NewNode()

	type side struct {
		h        *testbed.Host
		ifname   string
		priv     key.NodePrivate
		port     int
		peer     key.NodePublic
		peerEP   string
		peerLAN  string
		procName string
	}
	sides := []side{
		{s.RouterA, ifA, kA, portA, kB.Public(), fmt.Sprintf("%s:%d", testbed.WANB, portB), testbed.LANB, "wireguard-go-a"},
		{s.RouterB, ifB, kB, portB, kA.Public(), fmt.Sprintf("%s:%d", testbed.WANA, portA), testbed.LANA, "wireguard-go-b"},
	}
	dp := &dataPlane{
		mode:   ModeWireGo,
		note:   "stock " + wireGoModule + "@" + version + ", default TUN offloads",
		routeA: []string{"dev", ifA},
		routeB: []string{"dev", ifB},
		devA:   ifA,
		devB:   ifB,
		rssOf:  "wireguard-go",
	}
	for _, sd := range sides {
		// -f: stay in the foreground so the pid is the data plane's.
		p, err := sd.h.Start(sd.procName, bin, "-f", sd.ifname)
		if err != nil {
			return nil, err
		}
		dp.procs = append(dp.procs, p)
		sock := "/var/run/wireguard/" + sd.ifname + ".sock"
		if err := waitFor(ctx, 10*time.Second, func() error {
			if !p.Running() {
				return fmt.Errorf("wireguard-go exited: %v; log:\n%s", p.Err(), p.Log())
			}
			_, err := os.Stat(sock)
			return err
		}); err != nil {
			return nil, fmt.Errorf("%s: UAPI socket: %w", sd.h.Name, err)
		}
		keyFile := filepath.Join(dir, sd.ifname+".key")
		if err := os.WriteFile(keyFile, []byte(sd.priv.Base64()+"\n"), 0o600); err != nil {
			return nil, err
		}
		if _, err := sd.h.Run(ctx, "wg", "set", sd.ifname,
			"listen-port", fmt.Sprint(sd.port), "private-key", keyFile,
			"peer", sd.peer.String(), "endpoint", sd.peerEP, "allowed-ips", sd.peerLAN); err != nil {
			return nil, err
		}
		if _, err := sd.h.Run(ctx, "ip", "link", "set", sd.ifname, "up"); err != nil {
			return nil, err
		}
	}
	return dp, nil
}

// waitFor polls fn until it returns nil or d passes.
func waitFor(ctx context.Context, d time.Duration, fn func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", d, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
