package magicsock

import (
	"sync/atomic"
	"time"

	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Peers in other relay regions are reached through their home region: a
// relay only delivers to clients connected to it. We keep our home
// connection (relayLoop) and open one more per region a peer needs, on
// first use, closing it after regionIdle without traffic.

// regionIdle: a region connection unused this long is closed; the peer's
// next relayed packet opens it again (held handshakes bridge the dial).
const regionIdle = time.Minute

type regionRelay struct {
	id       int
	code     string
	cl       *derp.Client // nil while dialling
	lastUsed atomic.Int64 // unix nanoseconds
}

// regionCode names region id in dm ("" when absent).
func (c *Conn) regionCode(dm *wire.DERPMap, id int) string {
	if dm == nil || id == 0 {
		return ""
	}
	if r, err := dm.Region(id); err == nil {
		return r.Code
	}
	return ""
}

// relayFor is the relay connection that reaches k, with its region code:
// k's home region when it is not ours and in our map, else our home
// connection. With dial set, a missing region connection is opened in
// the background (cl is nil meanwhile). code is set even then.
func (c *Conn) relayFor(k key.NodePublic, dial bool) (cl *derp.Client, code string) {
	c.pmu.RLock()
	region := 0
	if ps := c.peers[k]; ps != nil {
		region = ps.region
	}
	c.pmu.RUnlock()

	dm := c.dmNow.Load() // not smu: SetConfig holds it while disco sends
	var reg wire.DERPRegion
	if region != 0 && dm != nil {
		if r, err := dm.Region(region); err == nil {
			reg = r
		}
	}

	c.relayMu.Lock()
	defer c.relayMu.Unlock()
	if reg.ID == 0 || reg.ID == c.relayRegion || (c.relay == nil && c.relayRegion == 0) {
		// Ours (or unknown): the home connection. Before the first home
		// connection we cannot tell, so wait for it rather than dial.
		if c.relay == nil {
			return nil, ""
		}
		return c.relay, c.relayCode
	}
	rr := c.regions[reg.ID]
	if rr == nil {
		if !dial || c.ctx.Err() != nil {
			return nil, ""
		}
		rr = &regionRelay{id: reg.ID, code: reg.Code}
		rr.lastUsed.Store(time.Now().UnixNano())
		c.regions[reg.ID] = rr
		c.wg.Go(func() { c.regionLoop(rr, reg) })
		return nil, reg.Code
	}
	if dial {
		rr.lastUsed.Store(time.Now().UnixNano())
	}
	return rr.cl, rr.code
}

// regionLoop connects rr, reads from it, and closes it when idle or when
// it fails; it then forgets rr so the next use dials again.
func (c *Conn) regionLoop(rr *regionRelay, reg wire.DERPRegion) {
	defer func() {
		c.relayMu.Lock()
		if c.regions[rr.id] == rr {
			delete(c.regions, rr.id)
		}
		c.relayMu.Unlock()
	}()
	c.smu.Lock()
	priv := c.priv
	c.smu.Unlock()
	cl, node := c.connectRelay(priv, reg)
	if cl == nil {
		c.log.Info("relay region connect failed", "region", reg.Code)
		return
	}
	c.relayMu.Lock()
	if c.regions[rr.id] != rr { // closed meanwhile (new key or map, shutdown)
		c.relayMu.Unlock()
		cl.Close()
		return
	}
	rr.cl = cl
	c.relayMu.Unlock()
	c.log.Info("relay region connected", "region", reg.Code, "node", node)
	c.flushPending(key.NodePublic{})

	done := make(chan struct{})
	defer close(done)
	go func() {
		idle := c.regionIdle
		t := time.NewTicker(max(idle/4, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-c.ctx.Done():
				cl.Close()
				return
			case <-t.C:
				if time.Since(time.Unix(0, rr.lastUsed.Load())) >= idle {
					c.log.Debug("relay region idle; closing", "region", reg.Code)
					cl.Close()
					return
				}
			}
		}
	}()
	err := c.readRelay(cl)
	cl.Close()
	if c.ctx.Err() == nil {
		c.log.Debug("relay region connection ended", "region", reg.Code, "err", err)
	}
}

// closeRegionRelays closes every region connection (new key, new map,
// shutdown); their loops forget them.
func (c *Conn) closeRegionRelays() {
	c.relayMu.Lock()
	var cls []*derp.Client
	for id, rr := range c.regions {
		if rr.cl != nil {
			cls = append(cls, rr.cl)
		}
		delete(c.regions, id)
	}
	c.relayMu.Unlock()
	for _, cl := range cls {
		cl.Close()
	}
}
