package server

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// S18: challenges are stateless, MAC'd and time-limited; any change to a
// nonce, a nonce from another coord (or before a restart) and an old one
// are refused.
func TestNonceMinter(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	m, err := newNonceMinter(time.Minute, clock)
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.issue()
	if err != nil || len(a) != NonceLen {
		t.Fatalf("issue: %q (%d chars) %v", a, len(a), err)
	}
	b, _ := m.issue()
	if a == b {
		t.Fatal("two nonces are equal")
	}
	ida, exp, err := m.check(a)
	if err != nil || !exp.Equal(now.Add(time.Minute)) {
		t.Fatalf("check fresh nonce: exp %v err %v", exp, err)
	}
	idb, _, _ := m.check(b)
	if ida == idb {
		t.Fatal("two nonces share an id")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(a)
	for i := range raw {
		bad := append([]byte{}, raw...)
		bad[i] ^= 0x01
		if _, _, err := m.check(base64.RawURLEncoding.EncodeToString(bad)); err == nil {
			t.Errorf("nonce with byte %d flipped accepted", i)
		}
	}
	other, _ := newNonceMinter(time.Minute, clock)
	if _, _, err := other.check(a); !errors.Is(err, errNonceForged) {
		t.Errorf("nonce of another coord: %v, want forged", err)
	}
	for _, s := range []string{"", "made-up", a[:NonceLen-1], a + "A", a[:NonceLen-1] + "="} {
		if _, _, err := m.check(s); !errors.Is(err, errNonceMalformed) {
			t.Errorf("check(%q): %v, want malformed", s, err)
		}
	}
	now = now.Add(59 * time.Second)
	if _, _, err := m.check(a); err != nil {
		t.Errorf("nonce at 59 s: %v", err)
	}
	now = now.Add(time.Second)
	if _, _, err := m.check(a); !errors.Is(err, errNonceExpired) {
		t.Errorf("nonce at 60 s: %v, want expired", err)
	}
	// Issued "in the future" (the clock stepped back) past the skew.
	future, _ := m.issue()
	now = now.Add(-time.Minute)
	if _, _, err := m.check(future); !errors.Is(err, errNonceExpired) {
		t.Errorf("nonce from the future: %v, want expired", err)
	}
}

// FuzzNonceCheck: checking never panics, and nothing but an issued nonce
// passes (S18).
func FuzzNonceCheck(f *testing.F) {
	now := time.Unix(1_000_000, 0)
	m, err := newNonceMinter(time.Minute, func() time.Time { return now })
	if err != nil {
		f.Fatal(err)
	}
	good, _ := m.issue()
	f.Add(good)
	f.Add("")
	f.Add(good[:40])
	f.Add(string(make([]byte, NonceLen)))
	f.Fuzz(func(t *testing.T, s string) {
		id, exp, err := m.check(s)
		if err != nil {
			return
		}
		if s != good {
			t.Fatalf("forged nonce %q accepted (id %x exp %v)", s, id, exp)
		}
	})
}

// The replay cache: single use per machine, bounded per machine and in
// machines, expired nonces forgotten (S18).
func TestMachinesReplay(t *testing.T) {
	now := time.Unix(1000, 0)
	ms := newMachines(3, 2, 1, 2)
	k1, k2, k3 := key.NewMachine().Public(), key.NewMachine().Public(), key.NewMachine().Public()
	id := func(b byte) nonceID { return nonceID{b} }
	exp := now.Add(time.Minute)
	if !ms.use(k1, id(1), exp, now) || ms.use(k1, id(1), exp, now) {
		t.Fatal("nonce not single-use")
	}
	if !ms.use(k2, id(1), exp, now) {
		t.Fatal("the same nonce id of another machine refused")
	}
	ms.use(k1, id(2), exp, now)
	ms.use(k1, id(3), exp, now)
	ms.use(k1, id(4), exp, now) // per-key bound 3: id 1 forgotten
	if ms.use(k1, id(4), exp, now) || ms.use(k1, id(3), exp, now) {
		t.Fatal("recent nonces forgotten")
	}
	if !ms.use(k1, id(1), exp, now) {
		t.Fatal("oldest nonce not evicted at the per-machine bound")
	}
	ms.use(k3, id(9), exp, now) // 3 machines, bound 2: k2 (least recent) goes
	if ms.len() != 2 || ms.known(k2) || !ms.known(k1) || !ms.known(k3) {
		t.Fatalf("machine bound: len %d known k1 %v k2 %v k3 %v", ms.len(), ms.known(k1), ms.known(k2), ms.known(k3))
	}
	later := exp.Add(time.Second)
	if !ms.use(k3, id(9), later.Add(time.Minute), later) {
		t.Fatal("expired nonce still remembered")
	}
	// Known machines' own challenge budget: burst 2, rate 1/s.
	if ok, _ := ms.allowChallenge(k2, later); ok {
		t.Fatal("challenge budget for an unknown machine")
	}
	ms.allowChallenge(k3, later)
	ms.allowChallenge(k3, later)
	if ok, retry := ms.allowChallenge(k3, later); ok || retry <= 0 || retry > time.Second {
		t.Fatalf("third challenge in burst 2: ok %v retry %v", ok, retry)
	}
	if ok, _ := ms.allowChallenge(k3, later.Add(time.Second)); !ok {
		t.Fatal("budget does not refill")
	}
}
