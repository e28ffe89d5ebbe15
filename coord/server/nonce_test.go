package server

import (
	"errors"
	"testing"
	"time"
)

func TestNonces(t *testing.T) {
	now := time.Unix(1000, 0)
	n := newNonces(time.Minute, 2, func() time.Time { return now })
	a, err := n.issue()
	if err != nil || len(a) != 43 {
		t.Fatalf("issue: %q %v", a, err)
	}
	if !n.consume(a) || n.consume(a) {
		t.Fatal("nonce not single-use")
	}
	if n.consume("never-issued") {
		t.Fatal("unknown nonce accepted")
	}
	b, _ := n.issue()
	n.issue()
	if _, err := n.issue(); !errors.Is(err, errNoncesFull) {
		t.Fatalf("third pending nonce with cap 2: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if n.consume(b) {
		t.Fatal("expired nonce accepted")
	}
	if _, err := n.issue(); err != nil {
		t.Fatalf("expired nonces not pruned: %v", err)
	}
}
