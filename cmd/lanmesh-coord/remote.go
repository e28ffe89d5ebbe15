package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lanmesh/lanmesh/coord/adminapi"
)

// Remote admin: with --server (or LANMESH_SERVER) the admin commands talk
// to coord's HTTPS admin API with an API key instead of the admin socket
// in --state-dir. The key is read from --api-key-file or LANMESH_API_KEY,
// never from a flag's value (it would land in shell history and ps).
// docs/admin.md.

// remoteFlags are the global flags of remote admin.
type remoteFlags struct {
	server      string
	keyFile     string
	fingerprint string
}

// addGlobalFlags defines the global flags on fs, with g's current values
// as defaults, so they work before and after the command name.
func addGlobalFlags(fs *flag.FlagSet, g *globals) {
	fs.StringVar(&g.stateDir, "state-dir", g.stateDir, "state directory; admin commands use its admin socket unless --server is given (env LANMESH_COORD_STATE_DIR)")
	fs.StringVar(&g.remote.server, "server", g.remote.server, "run admin commands against the coord at this https:// URL with an API key, instead of the local admin socket (env LANMESH_SERVER)")
	fs.StringVar(&g.remote.keyFile, "api-key-file", g.remote.keyFile, "file holding the API key for --server (lanmesh-coord apikeys create); or set LANMESH_API_KEY")
	fs.StringVar(&g.remote.fingerprint, "coord-fingerprint", g.remote.fingerprint, "pin of coord's TLS certificate for --server (lanmesh-coord fingerprint on coord), for a self-signed certificate; default: verify against the system's CAs (env LANMESH_COORD_FINGERPRINT)")
}

func (g *globals) initFlags() {
	g.stateDir = envOr("LANMESH_COORD_STATE_DIR", defaultStateDir)
	g.remote = remoteFlags{server: os.Getenv("LANMESH_SERVER"), fingerprint: os.Getenv("LANMESH_COORD_FINGERPRINT")}
}

// admin returns the client admin commands use: the remote one set up by
// connect, else the state dir's admin socket.
func admin(g *globals) *adminapi.Client {
	if g.client != nil {
		return g.client
	}
	return adminapi.NewClient(filepath.Join(g.stateDir, "admin.sock"))
}

// connect sets up the remote client when --server is given.
func (g *globals) connect() error {
	if g.remote.server == "" {
		if g.remote.keyFile != "" {
			return usageError{"--api-key-file needs --server URL (or LANMESH_SERVER)"}
		}
		return nil
	}
	key, err := g.apiKey()
	if err != nil {
		return err
	}
	c, err := adminapi.NewRemoteClient(adminapi.RemoteOptions{ServerURL: g.remote.server, APIKey: key, Fingerprint: g.remote.fingerprint})
	if err != nil {
		return err
	}
	g.client = c
	return nil
}

// apiKey reads the key from --api-key-file, else LANMESH_API_KEY. A file
// others can read is used, with a warning.
func (g *globals) apiKey() (string, error) {
	if g.remote.keyFile != "" {
		fi, err := os.Stat(g.remote.keyFile)
		if err != nil {
			return "", fmt.Errorf("--api-key-file: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(g.stderr, "lanmesh-coord: warning: API key file %s is readable by others (mode %v): chmod 600 %s\n", g.remote.keyFile, fi.Mode().Perm(), g.remote.keyFile)
		}
		b, err := os.ReadFile(g.remote.keyFile)
		if err != nil {
			return "", fmt.Errorf("--api-key-file: %w", err)
		}
		k := strings.TrimSpace(string(b))
		if k == "" {
			return "", fmt.Errorf("--api-key-file %s is empty: put the lmapi_... key from lanmesh-coord apikeys create in it", g.remote.keyFile)
		}
		return k, nil
	}
	if k := strings.TrimSpace(os.Getenv("LANMESH_API_KEY")); k != "" {
		return k, nil
	}
	return "", errors.New("--server needs an API key: --api-key-file FILE or the LANMESH_API_KEY environment variable (make one on coord with lanmesh-coord apikeys create --scope admin)")
}
