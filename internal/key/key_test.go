package key

import (
	"fmt"
	"strings"
	"testing"
)

func TestNodeRoundTrip(t *testing.T) {
	k := NewNode()
	pub := k.Public()
	b, _ := k.MarshalText()
	var k2 NodePrivate
	if err := k2.UnmarshalText(b); err != nil || k2 != k {
		t.Fatalf("private round trip: %v", err)
	}
	p2, err := ParseNodePublic(pub.String())
	if err != nil || p2 != pub {
		t.Fatalf("public round trip: %v", err)
	}
	if strings.Contains(k.String(), k.Base64()) {
		t.Fatal("String leaks the private key (S11)")
	}
}

func TestMachineSign(t *testing.T) {
	k := NewMachine()
	msg := []byte("hello")
	sig := k.Sign(msg)
	if !k.Public().Verify(msg, sig) {
		t.Fatal("valid signature rejected")
	}
	if k.Public().Verify([]byte("hellO"), sig) || k.Public().Verify(msg, sig[:10]) {
		t.Fatal("bad signature accepted")
	}
	var p MachinePublic
	b, _ := k.Public().MarshalText()
	if err := p.UnmarshalText(b); err != nil || p != k.Public() {
		t.Fatalf("machine public round trip: %v", err)
	}
	if err := p.UnmarshalText([]byte("mkey:!!")); err == nil {
		t.Fatal("garbage accepted")
	}
}

// TestSecret: Equal is the only comparison and it is constant time (S8);
// String and MarshalText never reveal the secret (S11).
func TestSecret(t *testing.T) {
	a, b := SecretString("tok-1"), NewSecret([]byte("tok-1"))
	if !a.Equal(b) || a.Equal(SecretString("tok-2")) || !a.EqualBytes([]byte("tok-1")) {
		t.Fatal("Secret.Equal compares contents")
	}
	if (Secret{}).Equal(Secret{}) || a.Equal(Secret{}) {
		t.Fatal("an empty secret must never match")
	}
	if s := fmt.Sprint(a); strings.Contains(s, "tok-1") {
		t.Fatalf("String leaks the secret: %q", s)
	}
	if m, _ := a.MarshalText(); strings.Contains(string(m), "tok-1") {
		t.Fatalf("MarshalText leaks the secret: %q", m)
	}
	var k1, k2 NodePrivate
	if !k1.IsZero() || !k1.Equal(k2) {
		t.Fatal("zero keys")
	}
	k1 = NewNode()
	if k1.IsZero() || k1.Equal(k2) {
		t.Fatal("NodePrivate.Equal")
	}
}
