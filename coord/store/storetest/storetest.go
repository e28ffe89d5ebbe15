// Package storetest is the contract every coord store (store.Store)
// passes, written once above the SQL dialect: the rules that must hold
// inside one transaction however many registrations race. A store's own
// test calls Run with a constructor for an empty store:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { ... })
//	}
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/coord/store"
	"github.com/lanmesh/lanmesh/internal/key"
)

// concurrency is how many registrations race in the concurrent checks.
const concurrency = 12

// Run runs the contract against stores made by newStore; each subtest
// gets a fresh, empty store, which newStore closes with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"SingleUseKeyOnce", singleUseKeyOnce},
		{"AddressesUnique", addressesUnique},
		{"AddressesNotReused", addressesNotReused},
		{"NamesUnique", namesUnique},
		{"NodeKeysUnique", nodeKeysUnique},
		{"NodeKeyRaceOneWins", nodeKeyRaceOneWins},
		{"AuditLog", auditLog},
		{"APIKeys", apiKeys},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

type keyRef struct {
	id   string
	hash []byte
}

func newKey(t *testing.T, s store.Store, id string, reusable bool) keyRef {
	t.Helper()
	h := sha256.Sum256([]byte("storetest-secret-" + id))
	now := time.Now()
	if err := s.CreatePreAuthKey(context.Background(), store.PreAuthKey{ID: id, Hash: h[:], Reusable: reusable,
		Expiry: now.Add(time.Hour), Created: now}); err != nil {
		t.Fatalf("create key %s: %v", id, err)
	}
	return keyRef{id, h[:]}
}

func register(s store.Store, k keyRef, mk key.MachinePublic, nk key.NodePublic, host string) (store.Node, error) {
	return s.Register(context.Background(), store.Registration{MachineKey: mk, NodeKey: nk, Hostname: host,
		AuthKeyID: k.id, AuthKeyHash: k.hash, KeyLifetime: time.Hour, Now: time.Now()})
}

// race runs f concurrency times at once and returns each result.
func race(f func(i int) (store.Node, error)) ([]store.Node, []error) {
	nodes, errs := make([]store.Node, concurrency), make([]error, concurrency)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range concurrency {
		wg.Go(func() {
			<-start
			nodes[i], errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return nodes, errs
}

func countNodes(t *testing.T, s store.Store) int {
	t.Helper()
	ns, err := s.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(ns)
}

// S7: a single-use key is checked and consumed in the transaction that
// writes the node, so of concurrent registrations exactly one wins.
func singleUseKeyOnce(t *testing.T, s store.Store) {
	k := newKey(t, s, "once", false)
	_, errs := race(func(int) (store.Node, error) {
		return register(s, k, key.NewMachine().Public(), key.NewNode().Public(), "n")
	})
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrKeyUsed):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || countNodes(t, s) != 1 {
		t.Fatalf("%d registrations succeeded with one single-use key (%d nodes), want 1", ok, countNodes(t, s))
	}
}

// Concurrent registrations get distinct host numbers and addresses.
func addressesUnique(t *testing.T, s store.Store) {
	k := newKey(t, s, "many", true)
	nodes, errs := race(func(i int) (store.Node, error) {
		return register(s, k, key.NewMachine().Public(), key.NewNode().Public(), fmt.Sprintf("n%d", i))
	})
	seen := map[string]int{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("registration %d: %v", i, err)
		}
		n := nodes[i]
		for _, a := range []string{fmt.Sprint("host ", n.Host), n.IPv4.String(), n.IPv6.String()} {
			if j, dup := seen[a]; dup {
				t.Errorf("nodes %d and %d share %s", j, i, a)
			}
			seen[a] = i
		}
	}
}

// A deleted node's addresses are not handed to the next node while a
// later node exists (peers may still route them to the old one): hosts
// are numbered upwards and gaps are filled only when the range runs out.
func addressesNotReused(t *testing.T, s store.Store) {
	k := newKey(t, s, "k", true)
	var nodes []store.Node
	for _, host := range []string{"a", "b"} {
		n, err := register(s, k, key.NewMachine().Public(), key.NewNode().Public(), host)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	a := nodes[0]
	if err := s.DeleteNode(context.Background(), a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNode(context.Background(), a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v, want ErrNotFound", err)
	}
	c, err := register(s, k, key.NewMachine().Public(), key.NewNode().Public(), "c")
	if err != nil {
		t.Fatal(err)
	}
	if c.IPv4 == a.IPv4 || c.IPv6 == a.IPv6 || c.Host == a.Host {
		t.Fatalf("deleted node's address reused: %v/%v", c.IPv4, c.IPv6)
	}
}

// Names are unique DNS labels: the same hostname registered at once gets
// distinct names, and a rename to a taken name is refused.
func namesUnique(t *testing.T, s store.Store) {
	k := newKey(t, s, "k", true)
	nodes, errs := race(func(int) (store.Node, error) {
		return register(s, k, key.NewMachine().Public(), key.NewNode().Public(), "router")
	})
	names := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("registration %d: %v", i, err)
		}
		if names[nodes[i].Name] {
			t.Errorf("name %q given twice", nodes[i].Name)
		}
		names[nodes[i].Name] = true
	}
	if _, err := s.RenameNode(context.Background(), nodes[0].ID, nodes[1].Name); !errors.Is(err, store.ErrNameTaken) {
		t.Fatalf("rename to a taken name: %v, want ErrNameTaken", err)
	}
}

// S19: a node key belongs to one node. Another machine registering with
// it (new or known, with or without an auth key) is refused, the refusal
// consumes no single-use key and writes nothing; the owner re-registering
// with its own key still works.
func nodeKeysUnique(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := newKey(t, s, "k", true)
	ownerMK, nk := key.NewMachine().Public(), key.NewNode().Public()
	owner, err := register(s, k, ownerMK, nk, "owner")
	if err != nil {
		t.Fatal(err)
	}
	once := newKey(t, s, "once", false)
	thief := key.NewMachine().Public()
	if _, err := register(s, once, thief, nk, "thief"); !errors.Is(err, store.ErrNodeKeyInUse) {
		t.Fatalf("new machine with a taken node key: %v, want ErrNodeKeyInUse", err)
	}
	if n := countNodes(t, s); n != 1 {
		t.Fatalf("%d nodes after a refused registration, want 1", n)
	}
	// The refusal rolled back: the single-use key still works once.
	known, err := register(s, once, thief, key.NewNode().Public(), "thief")
	if err != nil {
		t.Fatalf("single-use key after a refused registration: %v", err)
	}
	// A known machine may not switch to another node's key either.
	for _, r := range []store.Registration{
		{MachineKey: thief, NodeKey: nk, Now: time.Now()},
		{MachineKey: thief, NodeKey: nk, AuthKeyID: k.id, AuthKeyHash: k.hash, Now: time.Now()},
	} {
		if _, err := s.Register(ctx, r); !errors.Is(err, store.ErrNodeKeyInUse) {
			t.Fatalf("known machine taking another node's key (auth key %q): %v, want ErrNodeKeyInUse", r.AuthKeyID, err)
		}
	}
	if n, err := s.NodeByMachine(ctx, thief); err != nil || n.NodeKey != known.NodeKey {
		t.Fatalf("refused re-registration changed the node: %+v %v", n, err)
	}
	// The owner keeps its key through a re-registration.
	n, err := s.Register(ctx, store.Registration{MachineKey: ownerMK, NodeKey: nk, OS: "linux", Now: time.Now()})
	if err != nil || n.ID != owner.ID || n.NodeKey != nk {
		t.Fatalf("owner re-registering with its own key: %+v %v", n, err)
	}
}

// S19: machines racing to register one node key: exactly one gets it.
func nodeKeyRaceOneWins(t *testing.T, s store.Store) {
	k := newKey(t, s, "k", true)
	nk := key.NewNode().Public()
	_, errs := race(func(int) (store.Node, error) {
		return register(s, k, key.NewMachine().Public(), nk, "n")
	})
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrNodeKeyInUse):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || countNodes(t, s) != 1 {
		t.Fatalf("%d machines registered one node key (%d nodes), want 1", ok, countNodes(t, s))
	}
}
