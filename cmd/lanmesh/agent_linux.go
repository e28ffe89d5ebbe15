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
	"syscall"

	"github.com/lanmesh/lanmesh/agent/config"
	"github.com/lanmesh/lanmesh/agent/daemon"
	"github.com/lanmesh/lanmesh/agent/engine"
	"github.com/lanmesh/lanmesh/agent/localapi"
)

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("agent", "agent [--config FILE] [--state-dir DIR] [--tun NAME] [--port N]",
		"lanmesh agent --config /etc/lanmesh.yaml --state-dir /var/lib/lanmesh", stderr)
	file := fs.String("config", "", "YAML config file")
	fs.String("state-dir", config.Defaults().StateDir, "where state.json lives")
	fs.String("tun", config.Defaults().TUNName, "mesh interface name")
	fs.Int("port", config.Defaults().ListenPort, "WireGuard UDP port (0 picks one)")
	fs.String("log-level", config.Defaults().LogLevel, "debug, info, warn or error")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "lanmesh agent: unexpected argument %q\n", pos[0])
		return errUsage
	}
	// Only flags the user set override the file and env.
	keys := map[string]string{"state-dir": "state_dir", "tun": "tun_name", "port": "listen_port", "socket": "socket", "log-level": "log_level"}
	var flags []config.Flag
	fs.Visit(func(f *flag.Flag) {
		if k, ok := keys[f.Name]; ok {
			flags = append(flags, config.Flag{Key: k, Name: "--" + f.Name, Value: f.Value.String()})
		}
	})
	cfg, err := config.Load(config.Sources{File: *file, Env: os.Environ(), Flags: flags})
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
	d.Start()
	log.Info("agent running", "socket", cfg.Socket, "state_dir", cfg.StateDir, "tun", cfg.TUNName, "port", strconv.Itoa(cfg.ListenPort))

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	srv.Close()
	if cerr := d.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

func level(s string) slog.Level {
	var l slog.Level
	if l.UnmarshalText([]byte(s)) != nil {
		return slog.LevelWarn
	}
	return l
}
