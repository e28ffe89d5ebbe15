package daemon

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/agent/localapi"
)

// maxAuthKeyFileBytes bounds join.auth_key_file; a key is ~100 bytes.
const maxAuthKeyFileBytes = 4096

// JoinFromConfig does what "lanmesh up" would with the join block of the
// config (OpenWrt's /etc/config/lanmesh): it is called at start and on
// SIGHUP. Up restarts the control stream only when a pref changed, and
// never touches the WireGuard device, so tunnels stay up across a reload.
// The auth key file is read only while the node has not joined: once
// joined, the node proves its machine key instead.
func (d *Daemon) JoinFromConfig(ctx context.Context, cfg *config.Config) error {
	j := cfg.Join
	if j.LoginServer == "" {
		return nil
	}
	routes, err := cfg.AdvertiseRoutes()
	if err != nil {
		return err
	}
	req := localapi.UpRequest{
		LoginServer:      j.LoginServer,
		AdvertiseRoutes:  &routes,
		AcceptRoutes:     &j.AcceptRoutes,
		SNATSubnetRoutes: &j.SNATSubnetRoutes,
		// The exit node settings are config too: a UCI file without them
		// means none offered and none used, as on the CLI's defaults.
		AdvertiseExitNode:      &j.AdvertiseExitNode,
		ExitNode:               &j.ExitNode,
		ExitNodeAllowLANAccess: &j.ExitNodeAllowLANAccess,
		Timeout:                time.Minute,
	}
	if j.Hostname != "" {
		req.Hostname = &j.Hostname
	}
	d.mu.Lock()
	joinedHere := d.st != nil && d.st.Joined() && d.st.LoginServer == j.LoginServer
	d.mu.Unlock()
	if !joinedHere {
		if j.AuthKeyFile == "" {
			return fmt.Errorf("join.login_server is %s but this node has not joined it and join.auth_key_file is empty: put a pre-auth key (lanmesh-coord keys create) in a file and set join.auth_key_file, or run lanmesh up --auth-key-file FILE", j.LoginServer)
		}
		k, err := readAuthKeyFile(j.AuthKeyFile)
		if err != nil {
			return err
		}
		req.AuthKey = k
	}
	_, err = d.Up(ctx, req)
	return err
}

func readAuthKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("join.auth_key_file: %w (put the pre-auth key from lanmesh-coord keys create there)", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAuthKeyFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("join.auth_key_file %s: %w", path, err)
	}
	if len(b) > maxAuthKeyFileBytes {
		return "", fmt.Errorf("join.auth_key_file %s: larger than %d bytes; it should hold one key", path, maxAuthKeyFileBytes)
	}
	k := strings.TrimSpace(string(b))
	if k == "" {
		return "", fmt.Errorf("join.auth_key_file %s is empty: put the pre-auth key from lanmesh-coord keys create there", path)
	}
	return k, nil
}
