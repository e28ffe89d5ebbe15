package derp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// fakeWatchCoord serves WatchPath: each connection gets the lines sent on
// the channel current at connect time; closing it ends the stream.
type fakeWatchCoord struct {
	t     *testing.T
	conns chan chan KeysUpdate // one per accepted stream, for the test to feed
	hits  atomic.Int64
	raw   atomic.Pointer[string] // when set, sent as the first line instead
}

func newFakeWatchCoord(t *testing.T) (*fakeWatchCoord, *httptest.Server) {
	f := &fakeWatchCoord{t: t, conns: make(chan chan KeysUpdate, 8)}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
		if raw := f.raw.Load(); raw != nil {
			w.Write([]byte(*raw))
			return
		}
		w.(http.Flusher).Flush()
		ch := make(chan KeysUpdate, 16)
		f.conns <- ch
		for {
			select {
			case u, ok := <-ch:
				if !ok {
					return
				}
				b, _ := json.Marshal(u)
				w.Write(append(b, '\n'))
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(hs.Close)
	return f, hs
}

func (f *fakeWatchCoord) next(t *testing.T) chan KeysUpdate {
	t.Helper()
	select {
	case ch := <-f.conns:
		return ch
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher never connected")
		return nil
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// S15, S20, S9: the watcher answers from the pushed set, revokes removed
// keys at once, re-checks everyone after a (re)connect's full set, falls
// back to its Fallback when the stream has gone stale, and without one
// refuses (fail closed).
func TestCoordWatcher(t *testing.T) {
	f, hs := newFakeWatchCoord(t)
	a, b, c := key.NewNode().Public(), key.NewNode().Public(), key.NewNode().Public()
	var revoked, rechecks atomic.Int64
	var lastRevoked atomic.Pointer[key.NodePublic]
	var fallbackAsked atomic.Int64
	w := &CoordWatcher{
		URL: hs.URL, Token: "tok", MaxStale: 300 * time.Millisecond,
		Fallback: VerifierFunc(func(_ context.Context, k key.NodePublic) (bool, error) {
			fallbackAsked.Add(1)
			return k == c, nil
		}),
		Revoke:  func(k key.NodePublic) { revoked.Add(1); lastRevoked.Store(&k) },
		Recheck: func(context.Context) { rechecks.Add(1) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	allowed := func(k key.NodePublic) bool {
		ok, err := w.Allowed(context.Background(), k)
		return ok && err == nil
	}

	// Before the first full set the fallback answers.
	if !allowed(c) || allowed(a) || fallbackAsked.Load() != 2 {
		t.Fatalf("before sync: fallback not asked (%d)", fallbackAsked.Load())
	}
	ch := f.next(t)
	ch <- KeysUpdate{Seq: 1, Full: true, Add: []key.NodePublic{a, b}}
	waitFor(t, "full set", w.Fresh)
	if rechecks.Load() != 1 {
		t.Fatalf("rechecks after the full set: %d", rechecks.Load())
	}
	asked := fallbackAsked.Load()
	if !allowed(a) || !allowed(b) || allowed(c) || fallbackAsked.Load() != asked {
		t.Fatal("fresh set not used")
	}
	ch <- KeysUpdate{Seq: 2, Remove: []key.NodePublic{b}, Add: []key.NodePublic{c}}
	waitFor(t, "revoke of b", func() bool { return revoked.Load() == 1 })
	if *lastRevoked.Load() != b || allowed(b) || !allowed(c) {
		t.Fatal("delta not applied")
	}
	// Keep-alives keep the set fresh past MaxStale.
	for range 4 {
		time.Sleep(100 * time.Millisecond)
		ch <- KeysUpdate{Seq: 3}
	}
	if !w.Fresh() {
		t.Fatal("keep-alives did not keep the set fresh")
	}

	// Coord goes silent: the stream is dropped after MaxStale, the set
	// goes stale, the fallback answers; without a fallback, refuse.
	waitFor(t, "reconnect after silence", func() bool {
		select {
		case ch = <-f.conns:
			return true
		default:
			return false
		}
	})
	if w.Fresh() {
		t.Fatal("silent stream still fresh")
	}
	asked = fallbackAsked.Load()
	if allowed(a) || fallbackAsked.Load() == asked {
		t.Fatal("stale set used instead of the fallback")
	}
	fb := w.Fallback
	w.Fallback = nil
	if ok, err := w.Allowed(context.Background(), a); ok || err == nil {
		t.Fatalf("stale and no fallback: allowed=%v err=%v, want refused with an error (S9)", ok, err)
	}
	w.Fallback = fb
	// The reconnect's full set replaces the old one and re-checks all.
	ch <- KeysUpdate{Seq: 1, Full: true, Add: []key.NodePublic{c}}
	waitFor(t, "second full set", func() bool { return rechecks.Load() == 2 })
	if allowed(a) || !allowed(c) {
		t.Fatal("second full set not applied")
	}
	close(ch)

	// A stream that does not start with a full set is dropped.
	bad := `{"seq":1,"add":["` + keyB64(a) + `"]}` + "\n"
	f.raw.Store(&bad)
	hits := f.hits.Load()
	waitFor(t, "reconnects", func() bool { return f.hits.Load() >= hits+2 })
	waitFor(t, "stale", func() bool { return !w.Fresh() })
	if allowed(a) {
		t.Fatal("a delta without a full set was trusted")
	}
}

func keyB64(k key.NodePublic) string {
	b, _ := json.Marshal(k)
	return string(b[1 : len(b)-1])
}

// A key revoked while its handshake is being verified does not slip in
// after Revoke looked for it (S15).
func TestRevokeDuringHandshake(t *testing.T) {
	priv := key.NewNode()
	var allowed atomic.Bool
	allowed.Store(true)
	var srv *Server
	entered := make(chan struct{})
	release := make(chan struct{})
	var first atomic.Bool
	srv, err := NewServer(Options{Verifier: VerifierFunc(func(context.Context, key.NodePublic) (bool, error) {
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-release
			return true, nil // the answer from before the revoke
		}
		return allowed.Load(), nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := Connect(context.Background(), hs.URL+Path, priv, "")
		if err == nil {
			c.Close()
		}
		errc <- err
	}()
	<-entered
	allowed.Store(false)
	srv.Revoke(priv.Public()) // finds no client yet
	close(release)
	if err := <-errc; err == nil {
		t.Fatal("a key revoked mid-handshake was admitted")
	}
	if m := srv.Metrics(); m.ClientsConnected != 0 {
		t.Fatalf("connected after the refused handshake: %+v", m)
	}
}

// FuzzWatchStream feeds arbitrary bytes to the watcher as coord's stream:
// it never panics, and a stream whose first line is not a full set is
// never trusted.
func FuzzWatchStream(f *testing.F) {
	k := key.NewNode().Public()
	f.Add([]byte(`{"seq":1,"full":true,"add":["` + keyB64(k) + `"]}` + "\n" + `{"seq":2,"remove":["` + keyB64(k) + `"]}` + "\n"))
	f.Add([]byte(`{"seq":1,"add":["` + keyB64(k) + `"]}` + "\n"))
	f.Add([]byte("{\"seq\":1,\"full\":true}\n{}\n\n{\"add\":[\"x\"]}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(b) }))
		defer hs.Close()
		w := &CoordWatcher{URL: hs.URL, MaxStale: time.Minute, Revoke: func(key.NodePublic) {}, Recheck: func(context.Context) {}}
		got, _ := w.stream(context.Background())
		if w.Fresh() != got {
			t.Fatalf("fresh=%v after a stream that delivered a full set=%v", w.Fresh(), got)
		}
	})
}
