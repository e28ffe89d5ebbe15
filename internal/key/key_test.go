package key

import (
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
