package wire

import (
	"strings"
	"testing"
)

func TestAuthKeyRoundTrip(t *testing.T) {
	fp := Fingerprint([]byte("cert"))
	for _, k := range []AuthKey{
		{ID: "ab12cd34", Secret: "0123456789abcdef0123"},
		{ID: "ab12cd34", Secret: "0123456789abcdef0123", Fingerprint: fp},
	} {
		got, err := ParseAuthKey(k.String())
		if err != nil || got != k {
			t.Fatalf("ParseAuthKey(%q) = %+v, %v", k.String(), got, err)
		}
		if strings.Contains(k.Redacted(), k.Secret) {
			t.Fatal("Redacted leaks the secret")
		}
	}
}

func TestAuthKeyBad(t *testing.T) {
	for _, s := range []string{"", "lmk1", "lmk1.a.b", "lmk2.abcd.0123456789abcdef", "lmk1.abcd.0123456789abcdef.zz", "lmk1.ab cd.0123456789abcdef"} {
		if _, err := ParseAuthKey(s); err == nil {
			t.Errorf("ParseAuthKey(%q) accepted", s)
		}
	}
}

func FuzzParseAuthKey(f *testing.F) {
	f.Add("lmk1.ab12cd34.0123456789abcdef0123")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseAuthKey(s)
		if err != nil {
			return
		}
		if k2, err := ParseAuthKey(k.String()); err != nil || k2 != k {
			t.Fatalf("round trip of %q failed", s)
		}
	})
}
