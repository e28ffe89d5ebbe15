// Package bad compares secrets the ways a careless change would: every
// line with a want comment must be reported (S8).
package bad

import (
	"bytes"
	"crypto/sha256"
	"reflect"
	"sk"
	"strings"
)

type config struct {
	DerpToken   string
	AuthKeyHash []byte
}

type request struct{ MAC []byte }

func tokens(tok string, cfg config) bool {
	if tok == cfg.DerpToken { // want `secret tok compared with ==`
		return true
	}
	return string([]byte(tok)) != cfg.DerpToken // want `secret string\(\[\]byte\(tok\)\) compared with !=`
}

func hashes(k, r config) bool {
	return bytes.Equal(k.AuthKeyHash, r.AuthKeyHash) // want `compared with bytes.Equal`
}

func pins(der, fp []byte) bool {
	sum := sha256.Sum256(der)
	return bytes.Equal(sum[:], fp) // want `secret fp compared with bytes.Equal`
}

func challenge(msg []byte, challenge [32]byte) bool {
	return string(msg[:32]) == string(challenge[:]) // want `secret string\(challenge\[:\]\) compared`
}

func macs(a, b request) bool {
	return reflect.DeepEqual(a.MAC, b.MAC) || strings.EqualFold(string(a.MAC), string(b.MAC)) // want `reflect.DeepEqual` `strings.EqualFold`
}

func typed(a, b sk.Private, s, t sk.Secret) bool {
	switch a { // want `switch on secret a`
	case b:
		return true
	}
	return a == b || s != t // want `secret a compared with ==` `secret s compared with !=`
}

func authKeys(authKey, presented string) bool {
	return presented == authKey // want `secret authKey compared`
}
