package local

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/bcrypt"

	"github.com/lanmesh/lanmesh/plugins/sdk"
)

// Settings are the plugin's settings in coord's plugins config.
type Settings struct {
	DisplayName string `json:"display_name"` // default "Local account"
	UsersFile   string `json:"users_file"`   // required
}

// User is one entry of the users file (a JSON list of them).
type User struct {
	Username     string   `json:"username"`
	PasswordHash string   `json:"password_hash"` // bcrypt
	TOTPSecret   string   `json:"totp_secret"`   // base32; empty: no second factor
	Email        string   `json:"email,omitempty"`
	Name         string   `json:"name,omitempty"`
	Groups       []string `json:"groups,omitempty"`
	Disabled     bool     `json:"disabled,omitempty"`
}

const (
	loginTTL    = 10 * time.Minute // a login form stays valid this long
	codeTTL     = time.Minute      // the one-time code, from form to callback
	maxPending  = 10000
	maxFailures = 5 // per user within failWindow, then locked for failWindow
	failWindow  = 5 * time.Minute
)

// IdP implements sdk.IdP and http.Handler (the login form).
type IdP struct {
	Now func() time.Time // default time.Now

	s Settings

	mu       sync.Mutex // guards all following fields
	users    map[string]User
	mtime    time.Time
	pending  map[string]pendingLogin // by state
	codes    map[string]issuedCode   // by one-time code
	failures map[string][]time.Time  // by username
	lastTOTP map[string]uint64       // by username: last accepted time step (no replays)
}

type pendingLogin struct {
	redirect string
	expires  time.Time
}

type issuedCode struct {
	user    string
	state   string
	expires time.Time
}

func (p *IdP) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Configure implements sdk.IdP.
func (p *IdP) Configure(ctx context.Context, raw []byte) (sdk.Info, error) {
	var s Settings
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return sdk.Info{}, fmt.Errorf("local settings: %w", err)
	}
	if s.UsersFile == "" {
		return sdk.Info{}, errors.New("local settings: users_file is required")
	}
	if s.DisplayName == "" {
		s.DisplayName = "Local account"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.s = s
	p.pending = map[string]pendingLogin{}
	p.codes = map[string]issuedCode{}
	p.failures = map[string][]time.Time{}
	p.lastTOTP = map[string]uint64{}
	if err := p.loadLocked(); err != nil {
		return sdk.Info{}, err
	}
	return sdk.Info{DisplayName: s.DisplayName}, nil
}

// loadLocked (re)reads the users file when it changed.
func (p *IdP) loadLocked() error {
	fi, err := os.Stat(p.s.UsersFile)
	if err != nil {
		return fmt.Errorf("local users_file: %w", err)
	}
	if p.users != nil && fi.ModTime().Equal(p.mtime) {
		return nil
	}
	b, err := os.ReadFile(p.s.UsersFile)
	if err != nil {
		return fmt.Errorf("local users_file: %w", err)
	}
	users, err := ParseUsers(b)
	if err != nil {
		return fmt.Errorf("local users_file %s: %w", p.s.UsersFile, err)
	}
	p.users, p.mtime = users, fi.ModTime()
	return nil
}

// ParseUsers parses and checks a users file.
func ParseUsers(b []byte) (map[string]User, error) {
	var list []User
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("want a JSON list of users: %w", err)
	}
	users := make(map[string]User, len(list))
	for i, u := range list {
		if u.Username == "" || len(u.Username) > 64 || strings.ContainsAny(u.Username, " \t\r\n/:") {
			return nil, fmt.Errorf("users[%d].username %q: want 1-64 characters without spaces, '/' or ':'", i, u.Username)
		}
		if _, dup := users[u.Username]; dup {
			return nil, fmt.Errorf("users[%d]: username %q appears twice", i, u.Username)
		}
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			return nil, fmt.Errorf("users[%d] (%s).password_hash: not a bcrypt hash (make one with: lanmesh-idp-local hash-password)", i, u.Username)
		}
		if u.TOTPSecret != "" {
			if _, err := totp.GenerateCodeCustom(u.TOTPSecret, time.Unix(0, 0), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}); err != nil {
				return nil, fmt.Errorf("users[%d] (%s).totp_secret: not base32 (make one with: lanmesh-idp-local new-totp %s)", i, u.Username, u.Username)
			}
		}
		users[u.Username] = u
	}
	return users, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// BeginLogin implements sdk.IdP: the auth URL is the plugin's own form.
func (p *IdP) BeginLogin(ctx context.Context, req sdk.BeginRequest) (sdk.BeginResponse, error) {
	if req.State == "" || req.PluginURL == "" {
		return sdk.BeginResponse{}, errors.New("local: state and plugin URL are required")
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked(now)
	if len(p.pending) >= maxPending {
		return sdk.BeginResponse{}, errors.New("local: too many logins in progress; try again in a few minutes")
	}
	p.pending[req.State] = pendingLogin{redirect: req.RedirectURL, expires: now.Add(loginTTL)}
	return sdk.BeginResponse{AuthURL: req.PluginURL + "login?state=" + req.State}, nil
}

func (p *IdP) expireLocked(now time.Time) {
	for k, v := range p.pending {
		if now.After(v.expires) {
			delete(p.pending, k)
		}
	}
	for k, v := range p.codes {
		if now.After(v.expires) {
			delete(p.codes, k)
		}
	}
}

// CompleteLogin implements sdk.IdP: the one-time code the form issued,
// single use, bound to the login's state.
func (p *IdP) CompleteLogin(ctx context.Context, req sdk.CompleteRequest) (sdk.Identity, error) {
	code := req.Query.Get("code")
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.codes[code]
	delete(p.codes, code) // single use, even when the checks below fail
	if !ok || code == "" || now.After(c.expires) {
		return sdk.Identity{}, fmt.Errorf("%w: unknown, used or expired code", sdk.ErrBadCallback)
	}
	if subtle.ConstantTimeCompare([]byte(c.state), []byte(req.State)) != 1 {
		return sdk.Identity{}, fmt.Errorf("%w: code belongs to another login", sdk.ErrBadCallback)
	}
	if err := p.loadLocked(); err != nil {
		return sdk.Identity{}, err
	}
	u, ok := p.users[c.user]
	if !ok || u.Disabled {
		return sdk.Identity{}, fmt.Errorf("%w: user %s is gone or disabled", sdk.ErrRefused, c.user)
	}
	return identityOf(u), nil
}

func identityOf(u User) sdk.Identity {
	return sdk.Identity{Subject: u.Username, Email: u.Email, Name: u.Name, Groups: u.Groups}
}

// Refresh implements sdk.IdP: the user must still be in the file and
// enabled.
func (p *IdP) Refresh(ctx context.Context, id sdk.Identity) (sdk.Identity, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.loadLocked(); err != nil {
		return sdk.Identity{}, err
	}
	u, ok := p.users[id.Subject]
	if !ok || u.Disabled {
		return sdk.Identity{}, fmt.Errorf("%w: user %s is gone or disabled", sdk.ErrRefused, id.Subject)
	}
	return identityOf(u), nil
}

// dummyHash makes a login for an unknown user cost as much as for a
// known one, so timing does not tell which usernames exist.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("lanmesh-dummy-password"), bcrypt.DefaultCost)

// check verifies a form submission and returns the user or why not.
func (p *IdP) check(username, password, code string, now time.Time) (User, error) {
	p.mu.Lock()
	if err := p.loadLocked(); err != nil {
		p.mu.Unlock()
		return User{}, err
	}
	var recent []time.Time
	for _, t := range p.failures[username] {
		if now.Sub(t) < failWindow {
			recent = append(recent, t)
		}
	}
	p.failures[username] = recent
	if len(recent) >= maxFailures {
		p.mu.Unlock()
		return User{}, errors.New("too many failed attempts; wait a few minutes")
	}
	u, known := p.users[username]
	p.mu.Unlock()

	hash := dummyHash
	if known {
		hash = []byte(u.PasswordHash)
	}
	ok := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil && known && !u.Disabled
	var step uint64
	if ok && u.TOTPSecret != "" {
		ok = false
		// One step of clock skew either way, and never the same step twice.
		for _, d := range []time.Duration{0, -30 * time.Second, 30 * time.Second} {
			t := now.Add(d)
			want, err := totp.GenerateCode(u.TOTPSecret, t)
			if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
				step, ok = uint64(t.Unix()/30), true
				break
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok && u.TOTPSecret != "" && step <= p.lastTOTP[username] {
		ok = false
	}
	if !ok {
		if len(p.failures) >= maxPending {
			// Bounded memory under a flood of made-up usernames: forget
			// failures outside the window, and arbitrary others if need be.
			for u, ts := range p.failures {
				if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= failWindow || len(p.failures) >= maxPending {
					delete(p.failures, u)
				}
				if len(p.failures) < maxPending/2 {
					break
				}
			}
		}
		p.failures[username] = append(p.failures[username], now)
		return User{}, errors.New("wrong username, password or code")
	}
	if u.TOTPSecret != "" {
		p.lastTOTP[username] = step
	}
	delete(p.failures, username)
	return u, nil
}
