package daemon

import (
	"context"
	"errors"

	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/agent/netcheck"
)

// netchecker is the optional engine method behind `lanmesh netcheck`.
type netchecker interface {
	Netcheck(ctx context.Context) (*netcheck.Report, error)
}

// Netcheck implements localapi.Netchecker through the engine.
func (d *Daemon) Netcheck(ctx context.Context) (*netcheck.Report, error) {
	nc, ok := d.eng.(netchecker)
	if !ok {
		return nil, errors.New("the data plane cannot run a network check")
	}
	rep, err := nc.Netcheck(ctx)
	if rep == nil && err != nil {
		return nil, &localapi.Error{Code: 503, Msg: "netcheck: " + err.Error()}
	}
	return rep, nil
}
