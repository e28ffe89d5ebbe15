package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/agent/daemon"
	"github.com/lanmesh/lanmesh/agent/engine"
	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/agent/webui"
)

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("agent", "agent [--config FILE] [--uci FILE|none] [--state-dir DIR] [--tun NAME] [--port N] [--backend auto|kernel|userspace] [--wg-uapi]",
		"lanmesh agent --config /etc/lanmesh.yaml --state-dir /var/lib/lanmesh", stderr)
	file := fs.String("config", "", "YAML config file")
	uciFile := fs.String("uci", "", "UCI config file (default "+config.DefaultUCI+" when it exists; none: off)")
	fs.String("state-dir", config.Defaults().StateDir, "where state.json lives")
	fs.String("tun", config.Defaults().TUNName, "mesh interface name")
	fs.Int("port", config.Defaults().ListenPort, "WireGuard UDP port (0 picks one)")
	fs.String("backend", config.Defaults().Backend, "WireGuard backend: auto (kernel when it has WireGuard, else userspace), kernel or userspace")
	fs.Bool("wg-uapi", false, "serve the userspace WireGuard device's UAPI socket /var/run/wireguard/TUN.sock (wireguard-go's text protocol, root only)")
	fs.String("log-level", config.Defaults().LogLevel, "debug, info, warn or error")
	fs.String("netmap-cache-max-age", config.Defaults().NetmapCacheMaxAge, "oldest netmap cache restored at start (0: never); peers with expired keys are never restored")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "lanmesh agent: unexpected argument %q\n", pos[0])
		return errUsage
	}
	// Only flags the user set override the file and env.
	keys := map[string]string{"state-dir": "state_dir", "tun": "tun_name", "port": "listen_port", "backend": "backend", "wg-uapi": "wireguard_uapi", "socket": "socket", "log-level": "log_level", "netmap-cache-max-age": "netmap_cache_max_age"}
	var flags []config.Flag
	fs.Visit(func(f *flag.Flag) {
		if k, ok := keys[f.Name]; ok {
			flags = append(flags, config.Flag{Key: k, Name: "--" + f.Name, Value: f.Value.String()})
		}
	})
	src := config.Sources{File: *file, UCI: config.UCIPath(*uciFile), Env: os.Environ(), Flags: flags}
	cfg, err := config.Load(src)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level(cfg.LogLevel)}))

	d, err := daemon.New(daemon.Options{Config: cfg, Logger: log, NewEngine: engine.New})
	if err != nil {
		return err
	}
	srv, err := localapi.Listen(cfg.Socket, d, log.With("part", "localapi"))
	if err != nil {
		d.Close()
		return err
	}
	web, err := startWeb(cfg, src, d, log)
	if err != nil {
		srv.Close()
		d.Close()
		return err
	}
	d.Start()
	log.Info("agent running", "socket", cfg.Socket, "state_dir", cfg.StateDir, "tun", cfg.TUNName, "port", strconv.Itoa(cfg.ListenPort))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	joinFromConfig(ctx, d, cfg, log)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-served:
			break loop
		case <-hup:
			cfg = reload(ctx, d, src, cfg, log)
		}
	}
	srv.Close()
	if web != nil {
		web.Close()
	}
	if cerr := d.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// startWeb serves the web page when web.enabled; settings it changes are
// written back to the UCI file the agent was started with, if any.
func startWeb(cfg *config.Config, src config.Sources, d *daemon.Daemon, log *slog.Logger) (*webui.Server, error) {
	if !cfg.Web.Enabled {
		return nil, nil
	}
	tok, err := webui.LoadToken(cfg.WebTokenFile())
	if err != nil {
		return nil, err
	}
	o := webui.Options{Backend: d, Token: tok, Hosts: webui.HostsFor(cfg.Web.Listen, cfg.Web.HostNames()), Log: log.With("part", "web")}
	if src.UCI != "" {
		o.Persist = webui.PersistUCI(src.UCI)
	}
	ws, err := webui.Listen(cfg.Web.Listen, webui.New(o))
	if err != nil {
		return nil, err
	}
	go func() {
		if err := ws.Serve(); err != nil {
			log.Error("web page stopped", "err", err)
		}
	}()
	log.Info("web page serving", "listen", cfg.Web.Listen, "token_file", cfg.WebTokenFile())
	return ws, nil
}

func level(s string) slog.Level {
	var l slog.Level
	if l.UnmarshalText([]byte(s)) != nil {
		return slog.LevelWarn
	}
	return l
}

// joinFromConfig applies the config's join block in the background:
// registering may wait on coord, and the local API must answer meanwhile.
func joinFromConfig(ctx context.Context, d *daemon.Daemon, cfg *config.Config, log *slog.Logger) {
	if cfg.Join.LoginServer == "" {
		return
	}
	go func() {
		if err := d.JoinFromConfig(ctx, cfg); err != nil {
			log.Error("join from config failed", "login_server", cfg.Join.LoginServer, "err", err)
			return
		}
		log.Info("joined from config", "login_server", cfg.Join.LoginServer)
	}()
}

// reload re-reads the config on SIGHUP (OpenWrt's procd sends it after a
// UCI change). The join block applies live without dropping tunnels; keys
// that shape the device or sockets need a restart, and the log says so.
func reload(ctx context.Context, d *daemon.Daemon, src config.Sources, old *config.Config, log *slog.Logger) *config.Config {
	src.Env = os.Environ()
	cfg, err := config.Load(src)
	if err != nil {
		log.Error("reload: config refused, keeping the running one", "err", err)
		return old
	}
	if changed := config.RestartKeys(old, cfg); len(changed) > 0 {
		log.Warn("reload: these keys take effect after a restart (/etc/init.d/lanmesh restart)", "keys", strings.Join(changed, ","))
	}
	joinFromConfig(ctx, d, cfg, log)
	log.Info("reload: config applied")
	return cfg
}
