package host

import (
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{
		// comments are fine
		"plugins": [
			{"kind": "idp", "name": "google", "executable": "lanmesh-idp-oidc", "settings": {"issuer": "https://accounts.google.com"}, "call_timeout": "5s"},
			{"kind": "idp", "name": "local"},
		],
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Plugins) != 2 || c.Plugins[1].Executable != "lanmesh-idp-local" || string(c.Plugins[1].Settings) != "{}" || time.Duration(c.Plugins[0].CallTimeout) != 5*time.Second {
		t.Errorf("parsed %+v", c)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"plugins": [{"kind": "idp", "name": "Bad Name"}]}`, `plugins[0].name "Bad Name"`},
		{`{"plugins": [{"kind": "", "name": "x"}]}`, `plugins[0].kind ""`},
		{`{"plugins": [{"kind": "idp", "name": "x"}, {"kind": "idp", "name": "x"}]}`, `plugins[1]: a second idp plugin named "x"`},
		{`{"plugins": [{"kind": "idp", "name": "x", "executable": "../../bin/sh"}]}`, `plugins[0].executable "../../bin/sh": want a file name`},
		{`{"plugins": [{"kind": "idp", "name": "x", "settings": [1]}]}`, `plugins[0].settings: want a JSON object`},
		{`{"plugins": [{"kind": "idp", "name": "x", "call_timeout": "-1s"}]}`, `want a positive duration`},
		{`{"plugins": [{"kind": "idp", "name": "x", "color": "red"}]}`, `unknown field "color"`},
		{`{"plugins": `, `not valid JSON`},
	} {
		_, err := ParseConfig([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"plugins": [{"kind": "idp", "name": "x", "settings": {"a": 1}, "call_timeout": "1s"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		for _, p := range c.Plugins {
			if strings.ContainsAny(p.Executable, "/\\") || !nameRE.MatchString(p.Name) {
				t.Fatalf("accepted %+v", p)
			}
		}
	})
}

// TestParseLine: plugin stderr, hostile or not, becomes a log record.
func TestParseLine(t *testing.T) {
	for _, line := range []string{`{"@message": 5}`, `{"@level": {}}`, `[WARN] x`, `{`, `{"@message":"m","k":[1,2]}`} {
		parseLine(line) // must not panic
	}
	if lv, msg, _ := parseLine(`[WARN] disk full`); lv.String() != "WARN" || msg != "disk full" {
		t.Errorf("got %v %q", lv, msg)
	}
}
