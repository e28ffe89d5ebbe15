package localapi

import (
	"context"
	"net/http"

	"github.com/lanmesh/lanmesh/agent/netcheck"
)

// PathNetcheck runs a network check (GET: it changes nothing).
const PathNetcheck = "/localapi/v0/netcheck"

// Netchecker is the optional Backend part behind PathNetcheck.
type Netchecker interface {
	Netcheck(ctx context.Context) (*netcheck.Report, error)
}

func (s *Server) netcheck(w http.ResponseWriter, r *http.Request) {
	nc, ok := s.b.(Netchecker)
	if !ok {
		writeErr(w, http.StatusNotImplemented, "this agent cannot run a network check")
		return
	}
	rep, err := nc.Netcheck(r.Context())
	if err != nil && rep == nil {
		s.fail(w, "netcheck", err)
		return
	}
	writeJSON(w, rep)
}

// Netcheck asks the agent to check the network now.
func (c *Client) Netcheck(ctx context.Context) (*netcheck.Report, error) {
	var rep netcheck.Report
	if err := c.do(ctx, http.MethodGet, PathNetcheck, nil, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}
