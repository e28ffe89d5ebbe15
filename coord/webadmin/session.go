package webadmin

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"
)

// Session defaults: short enough that a forgotten tab does not stay an
// admin for long, long enough for an afternoon of work.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxAge      = 12 * time.Hour
	// maxSessions bounds memory (S18); past it the least recently used
	// session ends.
	maxSessions = 1000
	cookieName  = "__Host-lanmesh_admin"
)

// session is one signed-in admin.
type session struct {
	key      [32]byte // SHA-256 of the cookie's value: the value is never kept
	user     string
	provider string
	source   string
	csrf     string
	created  time.Time
	lastSeen time.Time
	flash    flash // shown once on the next page
}

type flash struct {
	Msg   string
	Error bool
}

// sessions holds the signed-in admins. mu guards all fields.
type sessions struct {
	mu    sync.Mutex
	byKey map[[32]byte]*session
	idle  time.Duration
	max   time.Duration
}

func newSessions(idle, max time.Duration) *sessions {
	return &sessions{byKey: map[[32]byte]*session{}, idle: idle, max: max}
}

func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session and returns the cookie value for it.
func (ss *sessions) create(user, provider, source string, now time.Time) (string, *session) {
	id := randomString()
	s := &session{key: sha256.Sum256([]byte(id)), user: user, provider: provider, source: source, csrf: randomString(), created: now, lastSeen: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.expireLocked(now)
	if len(ss.byKey) >= maxSessions {
		var oldest *session
		for _, o := range ss.byKey {
			if oldest == nil || o.lastSeen.Before(oldest.lastSeen) {
				oldest = o
			}
		}
		delete(ss.byKey, oldest.key)
	}
	ss.byKey[s.key] = s
	return id, s
}

// why a session is not valid
const (
	noSession      = "no session"
	sessionIdle    = "idle"
	sessionExpired = "expired"
)

// get returns the live session for the cookie value and marks it used;
// else why it is not live (and an expired one is gone).
func (ss *sessions) get(id string, now time.Time) (*session, string) {
	if id == "" {
		return nil, noSession
	}
	k := sha256.Sum256([]byte(id))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byKey[k]
	if s == nil {
		return nil, noSession
	}
	if now.Sub(s.created) >= ss.max {
		delete(ss.byKey, k)
		return nil, sessionExpired
	}
	if now.Sub(s.lastSeen) >= ss.idle {
		delete(ss.byKey, k)
		return nil, sessionIdle
	}
	s.lastSeen = now
	return s, ""
}

// end removes a session (logout, or its user lost the admin role).
func (ss *sessions) end(s *session) {
	ss.mu.Lock()
	delete(ss.byKey, s.key)
	ss.mu.Unlock()
}

// endUser removes every session of user.
func (ss *sessions) endUser(user string) {
	ss.mu.Lock()
	for k, s := range ss.byKey {
		if s.user == user {
			delete(ss.byKey, k)
		}
	}
	ss.mu.Unlock()
}

func (ss *sessions) expireLocked(now time.Time) {
	for k, s := range ss.byKey {
		if now.Sub(s.created) >= ss.max || now.Sub(s.lastSeen) >= ss.idle {
			delete(ss.byKey, k)
		}
	}
}

func (ss *sessions) setFlash(s *session, f flash) {
	ss.mu.Lock()
	s.flash = f
	ss.mu.Unlock()
}

func (ss *sessions) takeFlash(s *session) flash {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	f := s.flash
	s.flash = flash{}
	return f
}

func (ss *sessions) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.byKey)
}
