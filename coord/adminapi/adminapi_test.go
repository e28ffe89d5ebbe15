package adminapi

import (
	"strings"
	"testing"
	"time"
)

func TestParseExpiry(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90d", 90 * 24 * time.Hour, true}, {"1d", 24 * time.Hour, true}, {"720h", 720 * time.Hour, true}, {"1h30m", 90 * time.Minute, true},
		{"0d", 0, false}, {"-1d", 0, false}, {"d", 0, false}, {"1.5d", 0, false}, {"0s", 0, false}, {"-1h", 0, false}, {"", 0, false},
		{"36501d", 0, false}, {"forever", 0, false},
	} {
		got, err := ParseExpiry(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseExpiry(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzParseExpiry: any input gives a positive duration or an error that
// names the input, never a panic.
func FuzzParseExpiry(f *testing.F) {
	for _, s := range []string{"90d", "720h", "-1d", "9999999999999999999d", "1e9h", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseExpiry(s)
		if err == nil && d <= 0 {
			t.Fatalf("%q: non-positive %v accepted", s, d)
		}
		if err != nil && !strings.Contains(err.Error(), "want") {
			t.Fatalf("%q: error does not say what is wanted: %v", s, err)
		}
	})
}

func TestRemotePaths(t *testing.T) {
	if got := RemotePath(PathNodes + "/web/rename"); got != "/api/v1/admin/nodes/web/rename" {
		t.Errorf("RemotePath = %q", got)
	}
	if got, ok := SocketPath("/api/v1/admin/audit"); !ok || got != PathAudit {
		t.Errorf("SocketPath = %q %v", got, ok)
	}
	if _, ok := SocketPath("/v1/map"); ok {
		t.Error("SocketPath accepted a path outside the admin API")
	}
}

func TestNewRemoteClientRefuses(t *testing.T) {
	key := "lmapi_0123456789ab_" + strings.Repeat("A", 43)
	for _, o := range []RemoteOptions{
		{ServerURL: "http://coord.example.net", APIKey: key},
		{ServerURL: "https://coord.example.net/x", APIKey: key},
		{ServerURL: "coord.example.net", APIKey: key},
		{ServerURL: "https://coord.example.net"},
		{ServerURL: "https://coord.example.net", APIKey: "secret"},
		{ServerURL: "https://coord.example.net", APIKey: key, Fingerprint: "short"},
	} {
		if _, err := NewRemoteClient(o); err == nil {
			t.Errorf("%+v accepted", o)
		} else if strings.Contains(err.Error(), strings.Repeat("A", 43)) {
			t.Errorf("error echoes the key: %v", err)
		}
	}
}
