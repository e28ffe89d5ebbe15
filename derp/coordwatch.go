package derp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// The relay's push link to coord. A standalone relay keeps one
// authenticated stream open to coord (GET WatchPath, bearer token) and
// receives the set of node keys allowed on relays: the whole set first,
// then deltas, and a keep-alive every WatchKeepAlive. Keys that leave the
// set are cut off at once (Server.Revoke), so a node deleted, expired or
// disabled at coord loses a standalone relay as fast as coord's embedded
// one (S15, S20). Polling alone (HTTPVerifier's cache plus the re-check)
// took up to ~35 s.

// WatchPath is coord's endpoint for relays' key streams.
const WatchPath = "/v1/derp/watch"

// WatchKeepAlive is how often coord sends an empty update when nothing
// changed, so the relay can tell a quiet coord from a lost one.
const WatchKeepAlive = 5 * time.Second

// MaxWatchLine bounds one line of the key stream (a full set of ~300,000
// keys fits).
const MaxWatchLine = 16 << 20

// KeysUpdate is one line (JSON, newline-terminated) of the key stream.
// With Full, Add is the whole allowed set; otherwise Add and Remove are
// changes to it. A line with neither is a keep-alive.
type KeysUpdate struct {
	Seq    int64            `json:"seq"`
	Full   bool             `json:"full,omitempty"`
	Add    []key.NodePublic `json:"add,omitempty"`
	Remove []key.NodePublic `json:"remove,omitempty"`
}

// CoordWatcher is a Verifier fed by coord's key stream. While the stream
// is fresh (a line arrived within MaxStale) it answers from the pushed
// set without asking anyone. When it is stale it asks Fallback (normally
// an HTTPVerifier on coord's verify URL), and with no Fallback it refuses:
// a relay that cannot hear from coord fails closed (S9).
type CoordWatcher struct {
	URL    string       // coord's WatchPath URL
	Token  string       // bearer token; never logged
	Client *http.Client // nil: http.DefaultClient's transport, no overall timeout
	// Fallback answers while the stream is stale; nil: refuse.
	Fallback Verifier
	// MaxStale is how long the pushed set is trusted after the last line
	// from coord. Default 3*WatchKeepAlive.
	MaxStale time.Duration
	// Revoke is called for each key a delta removes; Recheck after each
	// full set (it re-asks about every connected client, so keys that
	// left while the stream was down, or that Fallback admitted, go too).
	// Normally Server.Revoke and Server.Recheck.
	Revoke  func(key.NodePublic)
	Recheck func(context.Context)
	Logger  *slog.Logger

	mu     sync.Mutex
	keys   map[key.NodePublic]struct{}
	synced bool      // keys came from a full set
	heard  time.Time // last line from coord
}

func (w *CoordWatcher) maxStale() time.Duration {
	if w.MaxStale > 0 {
		return w.MaxStale
	}
	return 3 * WatchKeepAlive
}

func (w *CoordWatcher) log() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

// Fresh reports whether the pushed set is trusted now.
func (w *CoordWatcher) Fresh() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.freshLocked(time.Now())
}

func (w *CoordWatcher) freshLocked(now time.Time) bool {
	return w.synced && now.Sub(w.heard) < w.maxStale()
}

// Allowed implements Verifier.
func (w *CoordWatcher) Allowed(ctx context.Context, k key.NodePublic) (bool, error) {
	w.mu.Lock()
	if w.freshLocked(time.Now()) {
		_, ok := w.keys[k]
		w.mu.Unlock()
		return ok, nil
	}
	w.mu.Unlock()
	if w.Fallback != nil {
		return w.Fallback.Allowed(ctx, k)
	}
	return false, errors.New("relay: no fresh key set from coord (its watch stream is down)")
}

// Forget passes Server.Revoke's forget on to the fallback's cache.
func (w *CoordWatcher) Forget(k key.NodePublic) {
	if f, ok := w.Fallback.(forgetter); ok {
		f.Forget(k)
	}
}

// Run keeps the stream open until ctx ends, reconnecting with jittered
// exponential backoff (0.5 s doubling to 30 s, reset by a stream that
// delivered a full set). It returns ctx's error.
func (w *CoordWatcher) Run(ctx context.Context) error {
	backoff := 500 * time.Millisecond
	for {
		got, err := w.stream(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if got {
			backoff = 500 * time.Millisecond
		}
		d := backoff/2 + rand.N(backoff/2+1)
		w.log().Warn("relay: coord key stream lost; reconnecting", "err", err, "in", d.Round(time.Millisecond), "url", w.URL)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// stream runs one connection; got says whether a full set arrived.
func (w *CoordWatcher) stream(ctx context.Context) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.URL, nil)
	if err != nil {
		return false, fmt.Errorf("coord watch URL: %w", err)
	}
	if w.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.Token)
	}
	c := w.Client
	if c == nil {
		c = &http.Client{}
	}
	// A line must arrive every WatchKeepAlive; a silent coord (or path)
	// is a lost one. The timer cancels the request, which ends the read.
	idle := time.AfterFunc(w.maxStale(), cancel)
	defer idle.Stop()
	resp, err := c.Do(req)
	if err != nil {
		return false, fmt.Errorf("ask %s: %w", req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("%s answered %s: %q", req.URL.Redacted(), resp.Status, b)
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := readWatchLine(br)
		if err != nil {
			return got, err
		}
		idle.Reset(w.maxStale())
		var u KeysUpdate
		if err := json.Unmarshal(line, &u); err != nil {
			return got, fmt.Errorf("coord key stream: bad line: %w", err)
		}
		if !u.Full && !got {
			return got, errors.New("coord key stream: first line is not a full set")
		}
		got = got || u.Full
		w.apply(ctx, u)
	}
}

func readWatchLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > MaxWatchLine {
			return nil, fmt.Errorf("coord key stream: line longer than %d bytes", MaxWatchLine)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// apply updates the set, then cuts off what left it. The set changes
// first, so a handshake racing with the cut is refused by Allowed.
func (w *CoordWatcher) apply(ctx context.Context, u KeysUpdate) {
	w.mu.Lock()
	w.heard = time.Now()
	var removed []key.NodePublic
	if u.Full {
		next := make(map[key.NodePublic]struct{}, len(u.Add))
		for _, k := range u.Add {
			next[k] = struct{}{}
		}
		w.keys, w.synced = next, true
	} else {
		for _, k := range u.Add {
			w.keys[k] = struct{}{}
		}
		for _, k := range u.Remove {
			if _, ok := w.keys[k]; ok {
				delete(w.keys, k)
				removed = append(removed, k)
			}
		}
	}
	n := len(w.keys)
	w.mu.Unlock()
	if u.Full {
		w.log().Info("relay: key set from coord", "keys", n)
		if w.Recheck != nil {
			w.Recheck(ctx)
		}
		return
	}
	if len(u.Add)+len(u.Remove) > 0 {
		w.log().Debug("relay: key set changed", "added", len(u.Add), "removed", len(u.Remove), "keys", n)
	}
	if w.Revoke != nil {
		for _, k := range removed {
			w.Revoke(k) // Server.Revoke also calls Forget
		}
	}
}
