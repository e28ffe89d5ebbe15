package localapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
)

// PathWhoIs answers who is behind a mesh address: GET ?addr=IP.
const PathWhoIs = "/localapi/v0/whois"

// WhoIsResponse is the node that holds a mesh address, as this node's
// netmap describes it, and what connections from it may do here. It is
// the seam for services on the node (an app proxy, SSH) that admit
// people, not addresses.
type WhoIsResponse struct {
	Addr string `json:"addr"`
	// Self: the address is this node's own.
	Self bool      `json:"self,omitempty"`
	Node WhoIsNode `json:"node"`
	// Caps are the app capabilities connections from Addr carry to this
	// node: the policy's grants with "app" whose src holds Addr and whose
	// dst is this node, values in policy order. Empty when none.
	Caps map[string][]json.RawMessage `json:"caps"`
}

// WhoIsNode is the node behind an address.
type WhoIsNode struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	// User is the owner's login; on a tagged node, the key's creator
	// (the node acts as its tags in the policy).
	User      string         `json:"user,omitempty"`
	Tags      []string       `json:"tags,omitempty"`
	Addresses []netip.Prefix `json:"addresses"`
}

// WhoIsBackend is the optional part of a Backend that answers whois.
type WhoIsBackend interface {
	WhoIs(ctx context.Context, addr netip.Addr) (WhoIsResponse, error)
}

func (s *Server) whoisRoutes(mux *http.ServeMux) {
	wb, ok := s.b.(WhoIsBackend)
	if !ok {
		return
	}
	mux.HandleFunc("GET "+PathWhoIs, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("addr")
		addr, err := netip.ParseAddr(q)
		if err != nil {
			// An address with a port ("100.64.0.7:443") is what a
			// service has at hand; take it too.
			ap, perr := netip.ParseAddrPort(q)
			if perr != nil {
				writeErr(w, http.StatusBadRequest, "whois: addr "+strconv.Quote(q)+" is not an IP address (e.g. ?addr=100.64.0.7)")
				return
			}
			addr = ap.Addr()
		}
		resp, err := wb.WhoIs(r.Context(), addr.Unmap().WithZone(""))
		if err != nil {
			s.fail(w, "whois", err)
			return
		}
		writeJSON(w, resp)
	})
}

// WhoIs asks who holds a mesh address.
func (c *Client) WhoIs(ctx context.Context, addr netip.Addr) (WhoIsResponse, error) {
	var out WhoIsResponse
	err := c.do(ctx, http.MethodGet, PathWhoIs+"?addr="+url.QueryEscape(addr.String()), nil, &out)
	return out, err
}
