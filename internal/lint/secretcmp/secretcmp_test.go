package secretcmp_test

import (
	"testing"

	"github.com/lanmesh/lanmesh/internal/lint/secretcmp"
	"golang.org/x/tools/go/analysis/analysistest"
)

// TestKnownBad feeds the check code that compares secrets with ==,
// switch, bytes.Equal, reflect.DeepEqual and friends: each must be
// reported, or the check could not catch a constant-time comparison
// replaced by == (S8). The good package must pass untouched.
func TestKnownBad(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), secretcmp.Analyzer, "bad", "good", "sk")
}

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"DerpToken": true, "tok": true, "AuthKeyHash": true, "fp": true,
		"HMACKey": true, "challenge": true, "authKey": true, "csrfCookie": true,
		"NodeKey": false, "name": false, "Hostname": false, "fpga": false,
		"keyID": false, "macAddr": true, "tokenize": false,
	} {
		if got := secretcmp.SecretName(name); got != want {
			t.Errorf("SecretName(%q) = %v, want %v", name, got, want)
		}
	}
}
