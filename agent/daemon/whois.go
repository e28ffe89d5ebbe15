package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"

	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// WhoIs implements localapi.WhoIsBackend: the node holding addr in this
// node's netmap, and the app capabilities connections from addr carry
// here (the packet filter's caps, from the policy's grants).
func (d *Daemon) WhoIs(_ context.Context, addr netip.Addr) (localapi.WhoIsResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nm == nil {
		return localapi.WhoIsResponse{}, &localapi.Error{Code: http.StatusServiceUnavailable,
			Msg: "whois: this node has no netmap yet; is it up? (lanmesh status)"}
	}
	resp := localapi.WhoIsResponse{Addr: addr.String(), Caps: map[string][]json.RawMessage{}}
	self := d.nm.self
	switch {
	case wire.PrefixesContain(self.Addresses, addr):
		resp.Self = true
		resp.Node = localapi.WhoIsNode{ID: int64(self.ID), Name: self.Name, User: self.User,
			Tags: slices.Clone(self.Tags), Addresses: nonNil(self.Addresses)}
	default:
		found := false
		for _, p := range d.nm.peers {
			if wire.PrefixesContain(p.Addresses, addr) {
				resp.Node = localapi.WhoIsNode{ID: int64(p.ID), Name: p.Name, User: p.User,
					Tags: slices.Clone(p.Tags), Addresses: nonNil(p.Addresses)}
				found = true
				break
			}
		}
		if !found {
			return localapi.WhoIsResponse{}, &localapi.Error{Code: http.StatusNotFound,
				Msg: fmt.Sprintf("whois: no node in this node's netmap holds %s (it may not exist, or the policy hides it from this node)", addr)}
		}
	}
	for name, vals := range d.nm.filter.CapsFrom(addr) {
		resp.Caps[name] = slices.Clone(vals)
	}
	return resp, nil
}
