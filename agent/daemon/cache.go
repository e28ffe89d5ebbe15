package daemon

import (
	"errors"
	"time"

	"github.com/lanmesh/lanmesh/agent/state"
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
// answers. A missing, corrupt or foreign cache is ignored (with a
// warning): the node then has no peers until coord answers, which fails
// closed.
func (d *Daemon) applyCacheLocked() {
	c, err := state.LoadNetmap(d.cfg.StateDir)
	if errors.Is(err, state.ErrNotExist) {
		return
	}
	if err != nil {
		d.log.Warn("ignoring the netmap cache", "err", err)
		return
	}
	if c.NodeKey != d.st.NodeKey.Public() || c.LoginServer != d.st.LoginServer {
		d.log.Warn("ignoring the netmap cache: it belongs to another node key or coord", "path", state.NetmapPath(d.cfg.StateDir))
		return
	}
	nm := &netmap{}
	if _, err := nm.apply(c.Map); err != nil {
		d.log.Warn("ignoring the netmap cache", "path", state.NetmapPath(d.cfg.StateDir), "err", err)
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
	err := state.StoreNetmap(d.cfg.StateDir, &state.NetmapCache{
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
