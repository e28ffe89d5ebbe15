package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/plugins/sdk"
)

// Options configure a Host. Zero durations take the defaults.
type Options struct {
	Dir    string // plugins directory
	Config Config
	Logger *slog.Logger
	// Kinds the host speaks; a config entry of another kind is an error.
	Kinds []sdk.Kind

	StartTimeout   time.Duration // start, handshake and Configure; default 10s
	HealthInterval time.Duration // default 5s
	MinBackoff     time.Duration // first restart delay; default 250ms
	MaxBackoff     time.Duration // default 30s
	// HangLimit is how many calls in a row may miss their deadline before
	// the plugin is restarted; default 3.
	HangLimit int
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 10 * time.Second
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = 5 * time.Second
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.HangLimit == 0 {
		o.HangLimit = 3
	}
}

// DefaultCallTimeout bounds a call when the plugin's config sets none.
const DefaultCallTimeout = 10 * time.Second

// Host is the registry of configured plugins, keyed by kind and name, and
// the owner of their processes.
type Host struct {
	opts   Options
	byKind map[string][]*Instance // sorted by name
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start checks the config against the plugins directory and starts every
// plugin in the background. A plugin that fails to start does not fail
// Start: it is retried with backoff and its calls fail with the reason.
// Close stops them all.
func Start(ctx context.Context, opts Options) (*Host, error) {
	opts.defaults()
	kinds := map[string]sdk.Kind{}
	for _, k := range opts.Kinds {
		kinds[k.Name] = k
	}
	if len(opts.Config.Plugins) > 0 && opts.Dir == "" {
		return nil, errors.New("plugins are configured but no plugins directory is set: pass --plugins-dir")
	}
	h := &Host{opts: opts, byKind: map[string][]*Instance{}}
	for i, pc := range opts.Config.Plugins {
		k, ok := kinds[pc.Kind]
		if !ok {
			names := make([]string, 0, len(kinds))
			for n := range kinds {
				names = append(names, n)
			}
			slices.Sort(names)
			return nil, fmt.Errorf("plugins[%d] (%s): unknown kind %q; this coord hosts %v", i, pc.Name, pc.Kind, names)
		}
		path := filepath.Join(opts.Dir, pc.Executable)
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("plugin %s/%s: executable %s: %w (install it into the plugins directory or set \"executable\")", pc.Kind, pc.Name, path, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("plugin %s/%s: %s is not an executable file", pc.Kind, pc.Name, path)
		}
		if fi.Mode()&0o002 != 0 {
			return nil, fmt.Errorf("plugin %s/%s: %s is writable by everyone; coord will not run it (chmod o-w)", pc.Kind, pc.Name, path)
		}
		timeout := time.Duration(pc.CallTimeout)
		if timeout == 0 {
			timeout = DefaultCallTimeout
		}
		in := &Instance{
			Kind: pc.Kind, Name: pc.Name, Path: path,
			kind: k, settings: pc.Settings, timeout: timeout, opts: &h.opts,
			log:  opts.Logger.With("plugin", pc.Kind+"/"+pc.Name),
			kick: make(chan struct{}, 1),
		}
		in.state = StateStarting
		h.byKind[pc.Kind] = append(h.byKind[pc.Kind], in)
	}
	for _, list := range h.byKind {
		slices.SortFunc(list, func(a, b *Instance) int {
			if a.Name < b.Name {
				return -1
			}
			if a.Name > b.Name {
				return 1
			}
			return 0
		})
	}
	ctx, h.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, list := range h.byKind {
		for _, in := range list {
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				in.supervise(ctx)
			}()
		}
	}
	return h, nil
}

// Instances returns the plugins of a kind, sorted by name.
func (h *Host) Instances(kind string) []*Instance {
	if h == nil {
		return nil
	}
	return h.byKind[kind]
}

// Get returns one plugin.
func (h *Host) Get(kind, name string) (*Instance, bool) {
	for _, in := range h.Instances(kind) {
		if in.Name == name {
			return in, true
		}
	}
	return nil, false
}

// WaitReady waits until every plugin has run its first start attempt
// (successfully or not) or ctx ends.
func (h *Host) WaitReady(ctx context.Context) error {
	for _, list := range h.byKind {
		for _, in := range list {
			for in.Status().State == StateStarting {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	}
	return nil
}

// Close stops every plugin and waits for them.
func (h *Host) Close() {
	if h == nil {
		return
	}
	h.cancel()
	h.wg.Wait()
}
