package webui

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/agent/config/uci"
	"github.com/lanmesh/lanmesh/internal/atomicfile"
)

// LoadToken reads the access token from path, creating the file 0600
// with a random token when it does not exist. A file readable by group or
// others is refused: anyone who can read it can run the router's mesh.
func LoadToken(path string) (string, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", fmt.Errorf("web token: %w", err)
		}
		tok := randHex()
		if err := atomicfile.Write(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("web token: %w", err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("web token: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("web token file %s is readable by others (mode %v): chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("web token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("web token file %s: want one token of at least 16 characters (delete the file to get a new random one)", path)
	}
	return tok, nil
}

// PersistUCI returns a Persist that writes settings into the "join"
// section of the UCI file at path (advertise_routes, accept_routes,
// advertise_exit_node), so they survive a restart and a reload.
func PersistUCI(path string) func(Settings) error {
	flag := func(key string, b *bool) error {
		if b == nil {
			return nil
		}
		v := "0"
		if *b {
			v = "1"
		}
		return uci.Set(path, "join", key, []string{v}, false)
	}
	return func(s Settings) error {
		if s.AdvertiseRoutes != nil {
			vals := make([]string, 0, len(*s.AdvertiseRoutes))
			for _, p := range *s.AdvertiseRoutes {
				vals = append(vals, p.String())
			}
			if err := uci.Set(path, "join", "advertise_routes", vals, true); err != nil {
				return err
			}
		}
		if err := flag("accept_routes", s.AcceptRoutes); err != nil {
			return err
		}
		return flag("advertise_exit_node", s.AdvertiseExitNode)
	}
}

// Server is the web page's HTTP server.
type Server struct {
	hs *http.Server
	ln net.Listener
}

// Listen binds addr (IP:port) for h.
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("web page: listen on %s (web.listen): %w", addr, err)
	}
	return &Server{ln: ln, hs: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Close; it returns nil after Close.
func (s *Server) Serve() error {
	if err := s.hs.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.hs.Shutdown(ctx)
}

// HostsFor is the Host header values a listen address and extra names
// allow: the IP:port itself and each name with the port (and without it
// on port 80, as browsers send it).
func HostsFor(listen string, names []string) []string {
	out := []string{listen}
	if host, port, err := net.SplitHostPort(listen); err == nil {
		for _, n := range names {
			out = append(out, net.JoinHostPort(n, port))
			if port == "80" {
				out = append(out, n)
			}
		}
		if p, _ := strconv.Atoi(port); p == 80 {
			out = append(out, strings.TrimSuffix(net.JoinHostPort(host, port), ":80"))
		}
	}
	return out
}
