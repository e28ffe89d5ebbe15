package testbed

import (
	"strings"
	"testing"
)

func TestParseStatus(t *testing.T) {
	for _, c := range []struct {
		in, errWant string
	}{
		{`{"backend_state":"Running","coord":{"connected":true},"self":{"name":"a","addresses":["100.64.0.1/32"],"routes":["198.19.1.0/24"]},"peers":[{"name":"b","addresses":["100.64.0.2/32"],"routes":["198.19.2.0/24"]}]}`, ""},
		{`{"backend_state":"NeedsLogin","coord":{"connected":false,"last_error":"x"},"self":null,"peers":null}`, ""},
		{`{}`, "backend_state missing"},
		{`not json`, "not the documented JSON"},
		{`{"backend_state":"Running","self":{"addresses":["100.64.0.1"]}}`, "address"},
		{`{"backend_state":"Running","peers":[{"routes":["zz"]}]}`, "route"},
	} {
		s, err := ParseStatus([]byte(c.in))
		if c.errWant == "" {
			if err != nil {
				t.Errorf("ParseStatus(%s): %v", c.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.errWant) {
			t.Errorf("ParseStatus(%s) = %v, %v; want error with %q", c.in, s, err, c.errWant)
		}
	}
	s, _ := ParseStatus([]byte(`{"backend_state":"Running","peers":[{"name":"b","key":"K","addresses":["100.64.0.2/32","fd7a::2/128"],"routes":["198.19.2.0/24"]}]}`))
	if p := s.Peer("b"); p == nil || !p.HasRoute("198.19.2.0/24") || p.IPv4() != "100.64.0.2" || s.PeerByKey("K") != p {
		t.Errorf("peer lookup failed: %+v", s)
	}
}

func TestFindAuthKey(t *testing.T) {
	k := "lmk1.ab12cd34.0123456789abcdef0123"
	for in, want := range map[string]string{
		`{"key":"` + k + `","id":"ab12cd34"}`: k,
		`{"data":{"keys":["x","` + k + `"]}}`: k,
		k + "\n":                              k,
		`{"key":"lmk1.bad"}`:                  "",
		``:                                    "",
	} {
		if got := findAuthKey(in); got != want {
			t.Errorf("findAuthKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(`{"backend_state":"Running","self":{"addresses":["100.64.0.1/32"]}}`))
	f.Add([]byte(`{"backend_state":"x","peers":[{"routes":["1.2.3.0/24"]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStatus(b)
		if err == nil && s.BackendState == "" {
			t.Fatal("accepted a status without backend_state")
		}
	})
}

func FuzzFindAuthKey(f *testing.F) {
	f.Add(`{"key":"lmk1.ab12cd34.0123456789abcdef0123"}`)
	f.Fuzz(func(t *testing.T, s string) { findAuthKey(s) })
}

func FuzzRedactArgs(f *testing.F) {
	f.Add("lmk1.ab12cd34.0123456789abcdef0123")
	f.Fuzz(func(t *testing.T, s string) {
		out := RedactArgs([]string{"up", "--auth-key", s})
		if strings.HasPrefix(s, "lmk1.") && strings.Contains(out, s) && len(s) > len("lmk1.REDACTED") {
			t.Fatalf("auth key %q not redacted", s)
		}
	})
}
