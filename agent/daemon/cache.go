package daemon

import (
	"errors"
	"time"

	"github.com/lanmesh/lanmesh/agent/state"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// cacheInterval is the most often the netmap cache is written while the
// netmap keeps changing: routers have flash, and a cache a few seconds
// old still brings the mesh back after a reboot.
const cacheInterval = 30 * time.Second

// cacheState tracks the netmap cache file (netmap.json).
type cacheState struct {
	dirty   bool        // d.nm differs from the file
	written time.Time   // last write; zero: none since start
	timer   *time.Timer // pending deferred write
}

// applyCacheLocked brings up the mesh from the last netmap before coord
// answers. A missing, corrupt, foreign or too old cache is ignored (with
// a warning): the node then has no peers until coord answers, which fails
// closed. Peers whose key has expired are left out (S20): a revoked or
// expired node must not come back from a file.
func (d *Daemon) applyCacheLocked() {
	c, err := state.LoadNetmap(d.cfg.NetmapCacheDir())
	if errors.Is(err, state.ErrNotExist) {
		return
	}
	if err != nil {
		d.log.Warn("ignoring the netmap cache", "err", err)
		return
	}
	if c.NodeKey != d.st.NodeKey.Public() || c.LoginServer != d.st.LoginServer {
		d.log.Warn("ignoring the netmap cache: it belongs to another node key or coord", "path", state.NetmapPath(d.cfg.NetmapCacheDir()))
		return
	}
	if why := staleCache(c, time.Now(), d.cfg.CacheMaxAge()); why != "" {
		d.log.Warn("ignoring the netmap cache: "+why, "path", state.NetmapPath(d.cfg.NetmapCacheDir()),
			"saved_at", c.SavedAt.Format(time.RFC3339), "netmap_cache_max_age", d.cfg.NetmapCacheMaxAge)
		return
	}
	for _, p := range dropExpiredPeers(c.Map, time.Now()) {
		d.log.Warn("not restoring a peer from the netmap cache: its key has expired", "peer", p.Name, "key", p.Key.ShortString(), "key_expiry", p.KeyExpiry.Format(time.RFC3339))
	}
	nm := &netmap{}
	if _, err := nm.apply(c.Map); err != nil {
		d.log.Warn("ignoring the netmap cache", "path", state.NetmapPath(d.cfg.NetmapCacheDir()), "err", err)
		return
	}
	d.nm = nm
	// As on the stream: bad peers are left out, the rest applies, and a
	// failure is logged, shown in status and retried (reconfigLocked).
	if err := d.reconfigLocked(engineConfig(d.st.NodeKey, nm, d.st.Prefs)); err != nil {
		d.log.Warn("netmap cache applied in part", "err", err)
	}
	d.updateDNSLocked()
	d.log.Info("mesh restored from the netmap cache until coord answers", "peers", len(nm.peers), "saved_at", c.SavedAt.Format(time.RFC3339))
}

// netmapChangedLocked notes that d.nm changed: the cache is written now
// if the last write is old enough, else once cacheInterval has passed.
func (d *Daemon) netmapChangedLocked() {
	d.cache.dirty = true
	since := time.Since(d.cache.written)
	if d.cache.written.IsZero() || since >= cacheInterval {
		d.writeCacheLocked()
		return
	}
	if d.cache.timer == nil {
		d.cache.timer = time.AfterFunc(cacheInterval-since, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.cache.timer = nil
			if d.cache.dirty && !d.closed {
				d.writeCacheLocked()
			}
		})
	}
}

func (d *Daemon) writeCacheLocked() {
	if d.nm == nil || !d.st.Joined() {
		return
	}
	now := time.Now()
	// written moves on even when the write fails, so a broken disk is
	// retried at the same slow pace rather than on every delta.
	d.cache.written = now
	err := state.StoreNetmap(d.cfg.NetmapCacheDir(), &state.NetmapCache{
		NodeKey: d.st.NodeKey.Public(), LoginServer: d.st.LoginServer, SavedAt: now.UTC(), Map: d.nm.fullMessage(),
	})
	if err != nil {
		d.log.Error("cannot write the netmap cache", "err", err)
		return
	}
	d.cache.dirty = false
}

// flushCacheOnCloseLocked writes a cache that is behind (clean shutdown).
func (d *Daemon) flushCacheOnCloseLocked() {
	if d.cache.timer != nil {
		d.cache.timer.Stop()
		d.cache.timer = nil
	}
	if d.cache.dirty {
		d.writeCacheLocked()
	}
}

// clockSkew is how far in the future a cache's SavedAt may be before the
// clock is taken to have gone backwards (a router without a real-time
// clock that booted in the past): then neither its age nor the peers'
// expiry can be judged, and the cache is not restored.
const clockSkew = 5 * time.Minute

// staleCache says why the cache c must not be restored at now, or "".
// maxAge 0 means the cache is never restored.
func staleCache(c *state.NetmapCache, now time.Time, maxAge time.Duration) string {
	switch {
	case maxAge <= 0:
		return "netmap_cache_max_age is 0"
	case c.SavedAt.IsZero():
		return "it has no saved_at time"
	case c.SavedAt.After(now.Add(clockSkew)):
		return "it was saved in the future (the clock is behind; wait for time sync)"
	case now.Sub(c.SavedAt) > maxAge:
		return "it is older than netmap_cache_max_age"
	case c.Map == nil:
		return "it holds no map"
	case c.Map.Self != nil && expired(*c.Map.Self, now):
		return "this node's own key has expired"
	}
	return ""
}

// dropExpiredPeers removes from m the peers whose key expired before now
// and returns them.
func dropExpiredPeers(m *wire.MapMessage, now time.Time) []wire.Node {
	if m == nil {
		return nil
	}
	var dropped []wire.Node
	kept := m.Peers[:0:0]
	for _, p := range m.Peers {
		if expired(p, now) {
			dropped = append(dropped, p)
			continue
		}
		kept = append(kept, p)
	}
	m.Peers = kept
	return dropped
}

func expired(n wire.Node, now time.Time) bool {
	return !n.KeyExpiry.IsZero() && !n.KeyExpiry.After(now)
}
