package main

import (
	"context"
	"log/slog"

	"github.com/lanmesh/lanmesh/coord/server"
	"github.com/lanmesh/lanmesh/plugins/host"
	"github.com/lanmesh/lanmesh/plugins/sdk"
)

const defaultPluginsDir = "/usr/lib/lanmesh/plugins"

type pluginFlags struct {
	dir, config string
}

// startPlugins runs the configured plugins and returns coord's login
// providers (every idp plugin, by name: coord names none itself).
func startPlugins(ctx context.Context, pf pluginFlags, serverURL string, log *slog.Logger) ([]server.LoginProvider, func(), error) {
	if pf.config == "" {
		return nil, func() {}, nil
	}
	cfg, err := host.LoadConfig(pf.config)
	if err != nil {
		return nil, nil, err
	}
	h, err := host.Start(ctx, host.Options{Dir: pf.dir, Config: cfg, Logger: log, Kinds: []sdk.Kind{sdk.IdPKind}})
	if err != nil {
		return nil, nil, err
	}
	idps := h.IdPs()
	if len(idps) > 0 && serverURL == "" {
		h.Close()
		return nil, nil, usageError{"identity provider plugins need --server-url: browsers are sent back to it after logging in"}
	}
	var out []server.LoginProvider
	for _, p := range idps {
		out = append(out, p)
	}
	if len(out) == 0 && len(cfg.Plugins) > 0 {
		log.Warn("plugins config names no idp plugin: nodes can join only with auth keys")
	}
	return out, h.Close, nil
}
