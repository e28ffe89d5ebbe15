package server

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

var errNoncesFull = errors.New("too many pending challenges; retry in a minute")

// nonces hands out single-use challenges. It is bounded: a flood of GETs
// costs at most max entries, then gets 503s until old ones expire.
type nonces struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[string]time.Time // nonce -> expiry
}

func newNonces(ttl time.Duration, max int, now func() time.Time) *nonces {
	return &nonces{ttl: ttl, max: max, now: now, m: map[string]time.Time{}}
}

func (n *nonces) issue() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	s := base64.RawURLEncoding.EncodeToString(b[:])
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.m) >= n.max {
		for k, exp := range n.m {
			if !now.Before(exp) {
				delete(n.m, k)
			}
		}
		if len(n.m) >= n.max {
			return "", errNoncesFull
		}
	}
	n.m[s] = now.Add(n.ttl)
	return s, nil
}

// consume reports whether s was issued, is unexpired and unused; either
// way s is gone afterwards.
func (n *nonces) consume(s string) bool {
	n.mu.Lock()
	exp, ok := n.m[s]
	delete(n.m, s)
	n.mu.Unlock()
	return ok && n.now().Before(exp)
}
