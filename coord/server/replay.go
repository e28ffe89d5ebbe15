package server

import (
	"container/list"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
)

// machines remembers, per known machine key, the nonces it has used (the
// replay cache that makes stateless nonces single-use) and its own
// challenge budget (so a known node behind an attacker's address still
// gets challenges). Only a request signed by a machine the store knows
// adds an entry, so an anonymous client cannot fill it (S18). It is
// bounded per key (perKey nonces; the oldest is forgotten first) and in
// total (maxKeys machines, least recently used evicted first).
//
// Forgetting a nonce before it expires would let its request be replayed
// until then; that takes more than perKey signed requests from one
// machine within the nonce lifetime (an agent makes two per connect), or
// more than maxKeys machines active within it.
type machines struct {
	perKey  int
	maxKeys int
	rate    float64 // challenges per second per machine
	burst   float64

	mu  sync.Mutex
	m   map[key.MachinePublic]*list.Element // of *machineEntry
	lru list.List                           // front: most recently used
}

type machineEntry struct {
	key    key.MachinePublic
	nonces []usedNonce // oldest first
	bucket tokenBucket
}

type usedNonce struct {
	id  nonceID
	exp time.Time
}

func newMachines(perKey, maxKeys int, rate, burst float64) *machines {
	return &machines{perKey: perKey, maxKeys: maxKeys, rate: rate, burst: burst, m: make(map[key.MachinePublic]*list.Element)}
}

// entry returns mk's entry, creating it (and evicting) if needed. mu held.
func (ms *machines) entry(mk key.MachinePublic, now time.Time) *machineEntry {
	if el, ok := ms.m[mk]; ok {
		ms.lru.MoveToFront(el)
		return el.Value.(*machineEntry)
	}
	e := &machineEntry{key: mk, bucket: tokenBucket{tokens: ms.burst, last: now}}
	ms.m[mk] = ms.lru.PushFront(e)
	for len(ms.m) > ms.maxKeys {
		old := ms.lru.Back()
		ms.lru.Remove(old)
		delete(ms.m, old.Value.(*machineEntry).key)
	}
	return e
}

// add makes mk known without using a nonce.
func (ms *machines) add(mk key.MachinePublic, now time.Time) {
	ms.mu.Lock()
	ms.entry(mk, now)
	ms.mu.Unlock()
}

// use records that known machine mk used nonce id (valid until exp) and
// reports false if it had already used it: a replay.
func (ms *machines) use(mk key.MachinePublic, id nonceID, exp, now time.Time) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	e := ms.entry(mk, now)
	live := e.nonces[:0]
	seen := false
	for _, u := range e.nonces {
		if now.Before(u.exp) {
			live = append(live, u)
			seen = seen || u.id == id
		}
	}
	e.nonces = live
	if seen {
		return false
	}
	if len(e.nonces) >= ms.perKey {
		e.nonces = append(e.nonces[:0], e.nonces[len(e.nonces)-ms.perKey+1:]...)
	}
	e.nonces = append(e.nonces, usedNonce{id: id, exp: exp})
	return true
}

// allowChallenge spends one of known machine mk's own challenges; ok is
// false for a machine not in the table (unknown, or not seen lately).
func (ms *machines) allowChallenge(mk key.MachinePublic, now time.Time) (ok bool, retry time.Duration) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	el, known := ms.m[mk]
	if !known {
		return false, 0
	}
	return el.Value.(*machineEntry).bucket.take(ms.rate, ms.burst, now)
}

// known reports whether mk made a verified request lately.
func (ms *machines) known(mk key.MachinePublic) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	_, ok := ms.m[mk]
	return ok
}

func (ms *machines) len() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.m)
}
