package daemon

import (
	"context"
	"errors"

	"github.com/lanmesh/lanmesh/agent/engine"
	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/agent/netcheck"
)

// Netcheck implements localapi.Netchecker through the engine.
func (d *Daemon) Netcheck(ctx context.Context) (*netcheck.Report, error) {
	nc, ok := d.eng.(engine.Netchecker)
	if !ok {
		return nil, errors.New("the data plane cannot run a network check")
	}
	rep, err := nc.Netcheck(ctx)
	if rep == nil && err != nil {
		return nil, &localapi.Error{Code: 503, Msg: "netcheck: " + err.Error()}
	}
	return rep, nil
}
