// Package good compares secrets the right way and compares public values
// freely: nothing here may be reported.
package good

import (
	"crypto/subtle"
	"sk"
)

func equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

func ok(tok, want string, a, b sk.Public, p sk.Private, fp []byte, name, other string) bool {
	if tok == "" || len(fp) != 32 { // constants and lengths leak nothing
		return false
	}
	if a == b || name == other { // public keys and names are not secrets
		return true
	}
	if p == (sk.Private{}) { //lint:notsecret zero check in a test double
		return false
	}
	return equal([]byte(tok), []byte(want))
}
