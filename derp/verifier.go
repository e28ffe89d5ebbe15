package derp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// Verifier decides whether a node key may use the relay. The server asks
// at handshake and again periodically; an error means "no" (S9: a relay
// that cannot ask coord fails closed).
type Verifier interface {
	Allowed(ctx context.Context, k key.NodePublic) (bool, error)
}

// forgetter is implemented by caching verifiers so Server.Revoke can make
// the next check ask the source again.
type forgetter interface {
	Forget(k key.NodePublic)
}

// VerifierFunc adapts a function to Verifier.
type VerifierFunc func(ctx context.Context, k key.NodePublic) (bool, error)

func (f VerifierFunc) Allowed(ctx context.Context, k key.NodePublic) (bool, error) { return f(ctx, k) }

// VerifyRequest is the JSON body HTTPVerifier posts.
type VerifyRequest struct {
	NodeKey key.NodePublic `json:"node_key"`
}

// VerifyResponse is the JSON answer HTTPVerifier expects with status 200.
type VerifyResponse struct {
	Allowed bool `json:"allowed"`
}

// HTTPVerifier asks a URL (normally coord) whether a key is allowed:
// POST {url} with VerifyRequest, answer 200 VerifyResponse. Any other
// status, a timeout or a malformed body is an error, so the relay fails
// closed. Answers are cached for TTL so a busy relay does not hammer
// coord; Forget (called by Server.Revoke) drops a key's entry at once.
type HTTPVerifier struct {
	URL    string
	Token  string        // optional bearer token proving the relay to coord; never logged
	Client *http.Client  // nil: a client with a 5 s timeout
	TTL    time.Duration // 0: 5 s; negative: no cache

	mu    sync.Mutex
	cache map[key.NodePublic]cacheEntry
}

type cacheEntry struct {
	allowed bool
	until   time.Time
}

const maxVerifierCache = 100_000 // bounds memory when many keys connect

func (v *HTTPVerifier) ttl() time.Duration {
	if v.TTL == 0 {
		return 5 * time.Second
	}
	return v.TTL
}

// Allowed implements Verifier.
func (v *HTTPVerifier) Allowed(ctx context.Context, k key.NodePublic) (bool, error) {
	now := time.Now()
	v.mu.Lock()
	if e, ok := v.cache[k]; ok && now.Before(e.until) {
		v.mu.Unlock()
		return e.allowed, nil
	}
	v.mu.Unlock()

	allowed, err := v.ask(ctx, k)
	if err != nil {
		return false, err // errors are never cached: ask again next time
	}
	if ttl := v.ttl(); ttl > 0 {
		v.mu.Lock()
		if v.cache == nil || len(v.cache) >= maxVerifierCache {
			v.cache = make(map[key.NodePublic]cacheEntry)
		}
		v.cache[k] = cacheEntry{allowed: allowed, until: now.Add(ttl)}
		v.mu.Unlock()
	}
	return allowed, nil
}

// Forget drops k's cached answer.
func (v *HTTPVerifier) Forget(k key.NodePublic) {
	v.mu.Lock()
	delete(v.cache, k)
	v.mu.Unlock()
}

func (v *HTTPVerifier) ask(ctx context.Context, k key.NodePublic) (bool, error) {
	if v.URL == "" {
		return false, errors.New("relay verifier: no URL configured")
	}
	body, err := json.Marshal(VerifyRequest{NodeKey: k})
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("relay verifier: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if v.Token != "" {
		req.Header.Set("Authorization", "Bearer "+v.Token)
	}
	c := v.Client
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, fmt.Errorf("relay verifier: ask %s: %w", req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		return false, fmt.Errorf("relay verifier: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("relay verifier: %s answered %s", req.URL.Redacted(), resp.Status)
	}
	var r VerifyResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return false, fmt.Errorf("relay verifier: answer is not {\"allowed\":bool}: %w", err)
	}
	return r.Allowed, nil
}
