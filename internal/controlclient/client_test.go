package controlclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// fakeCoord is a unit-test double of coord: it hands out nonces and checks
// signatures like the real one, so the client's signing is really tested.
type fakeCoord struct {
	mu     sync.Mutex
	nonces map[string]bool
	mapFn  func(w http.ResponseWriter, f http.Flusher)
}

func (f *fakeCoord) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case wire.PathChallenge:
		f.mu.Lock()
		n := "nonce-" + time.Now().Format(time.RFC3339Nano)
		f.nonces[n] = true
		f.mu.Unlock()
		json.NewEncoder(w).Encode(wire.Challenge{Nonce: n})
	case wire.PathRegister, wire.PathMap:
		var env wire.Envelope
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil {
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(wire.Error{Error: "bad envelope"})
			return
		}
		f.mu.Lock()
		ok := f.nonces[env.Nonce]
		delete(f.nonces, env.Nonce)
		f.mu.Unlock()
		if !ok || !env.Machine.Verify(wire.SignedBytes(r.URL.Path, env.Nonce, env.Body), env.Sig) {
			w.WriteHeader(401)
			json.NewEncoder(w).Encode(wire.Error{Error: "bad signature"})
			return
		}
		if r.URL.Path == wire.PathRegister {
			var rr wire.RegisterRequest
			json.Unmarshal(env.Body, &rr)
			if rr.AuthKey == "expired" {
				w.WriteHeader(401)
				json.NewEncoder(w).Encode(wire.Error{Error: "auth key expired at 2020-01-01T00:00:00Z"})
				return
			}
			json.NewEncoder(w).Encode(wire.RegisterResponse{Node: wire.Node{ID: 1, Name: rr.Hostname, Key: rr.NodeKey}})
			return
		}
		f.mapFn(w, w.(http.Flusher))
	default:
		http.NotFound(w, r)
	}
}

func newTest(t *testing.T, mapFn func(http.ResponseWriter, http.Flusher)) (*httptest.Server, *Client) {
	t.Helper()
	srv := httptest.NewTLSServer(&fakeCoord{nonces: map[string]bool{}, mapFn: mapFn})
	t.Cleanup(srv.Close)
	c, err := New(Options{ServerURL: srv.URL, Fingerprint: wire.Fingerprint(srv.Certificate().Raw), MachineKey: key.NewMachine()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return srv, c
}

func TestRegisterSignedAndPinned(t *testing.T) {
	_, c := newTest(t, nil)
	nk := key.NewNode().Public()
	rr, err := c.Register(context.Background(), wire.RegisterRequest{NodeKey: nk, Hostname: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if rr.Node.Key != nk || rr.Node.Name != "a" {
		t.Fatalf("got %+v", rr.Node)
	}
	_, err = c.Register(context.Background(), wire.RegisterRequest{AuthKey: "expired", NodeKey: nk})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 401 || !strings.Contains(se.Message, "auth key expired") {
		t.Fatalf("want StatusError 401 auth key expired, got %v", err)
	}
}

func TestWrongPinRefused(t *testing.T) {
	srv, _ := newTest(t, nil)
	c, err := New(Options{ServerURL: srv.URL, Fingerprint: wire.Fingerprint([]byte("other")), MachineKey: key.NewMachine()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Register(context.Background(), wire.RegisterRequest{Hostname: "a"})
	if err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("want pin mismatch, got %v", err)
	}
	// Without a pin, system roots apply and the test CA is unknown.
	c2, _ := New(Options{ServerURL: srv.URL, MachineKey: key.NewMachine()})
	if _, err := c2.Register(context.Background(), wire.RegisterRequest{Hostname: "a"}); err == nil {
		t.Fatal("self-signed cert accepted without a pin")
	}
}

func TestNewValidates(t *testing.T) {
	mk := key.NewMachine()
	for _, o := range []Options{
		{ServerURL: "http://x", MachineKey: mk},
		{ServerURL: "https://", MachineKey: mk},
		{ServerURL: "https://x"},
		{ServerURL: "https://x", MachineKey: mk, Fingerprint: "nope"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o.ServerURL)
		}
	}
}

func TestMapStreamAndIdle(t *testing.T) {
	_, c := newTest(t, func(w http.ResponseWriter, f http.Flusher) {
		w.Write([]byte(`{"seq":1,"full":true,"self":{"id":1,"name":"a"}}` + "\n"))
		f.Flush()
		w.Write([]byte(`{"seq":2,"keep_alive":true}` + "\n"))
		f.Flush()
		time.Sleep(2 * time.Second) // then silence
	})
	c.idleTimeout = 300 * time.Millisecond
	var got []*wire.MapMessage
	err := c.Map(context.Background(), wire.MapRequest{}, func(m *wire.MapMessage) error {
		got = append(got, m)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "no message") {
		t.Fatalf("want idle error, got %v", err)
	}
	if len(got) != 2 || !got[0].Full || got[0].Self.Name != "a" || !got[1].KeepAlive {
		t.Fatalf("messages: %+v", got)
	}

	stop := errors.New("stop")
	err = c.Map(context.Background(), wire.MapRequest{}, func(m *wire.MapMessage) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("fn error not returned: %v", err)
	}
}

// coord's final refusals carry a reason the agent acts on (NeedsLogin,
// no retry); a reason on a 5xx, or a 401 without one, stays retryable.
func TestStatusErrReason(t *testing.T) {
	for _, tc := range []struct {
		code  int
		body  string
		final bool
	}{
		{401, `{"error":"machine not registered: join with an auth key first","reason":"not_registered"}`, true},
		{403, `{"error":"user is disabled","reason":"user_disabled"}`, true},
		{401, `{"error":"nonce expired: fetch a new challenge"}`, false},
		{503, `{"error":"busy","reason":"not_registered"}`, false},
		{429, `not json`, false},
	} {
		rec := httptest.NewRecorder()
		rec.WriteHeader(tc.code)
		rec.WriteString(tc.body)
		err := statusErr(rec.Result())
		se, ok := err.(*StatusError)
		if !ok || se.Code != tc.code || se.NeedsLogin() != tc.final {
			t.Errorf("%d %s: %#v, NeedsLogin want %v", tc.code, tc.body, err, tc.final)
		}
	}
}
