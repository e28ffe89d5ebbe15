package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/agent/localapi"
)

// The auth key can stay out of argv (/proc/*/cmdline, S11): from a file
// (--auth-key file:PATH or --auth-key-file PATH), stdin (--auth-key -) or
// LANMESH_AUTH_KEY; the plain flag still works. Errors never echo the key.
func TestResolveAuthKey(t *testing.T) {
	const key = "lmk1.abcd.0123456789abcdef.fp"
	dir := t.TempDir()
	file := filepath.Join(dir, "authkey")
	if err := os.WriteFile(file, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	env := func(v string) func(string) string {
		return func(name string) string {
			if name == authKeyEnv {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name, flag, file, env, stdin string
		want, wantErr                string
	}{
		{name: "flag", flag: key, want: key},
		{name: "file: prefix", flag: "file:" + file, want: key},
		{name: "--auth-key-file", file: file, want: key},
		{name: "stdin", flag: "-", stdin: key + "\nignored second line\n", want: key},
		{name: "stdin without newline", flag: "-", stdin: "  " + key, want: key},
		{name: "env", env: key, want: key},
		{name: "flag beats env", flag: "lmk1.other.x", env: key, want: "lmk1.other.x"},
		{name: "none", want: ""},
		{name: "both flags", flag: key, file: file, wantErr: "both given"},
		{name: "missing file", file: filepath.Join(dir, "nope"), wantErr: "no such file"},
		{name: "empty file", file: empty, wantErr: "empty"},
		{name: "empty stdin", flag: "-", stdin: "", wantErr: "from stdin: empty"},
		{name: "file: without path", flag: "file:", wantErr: "needs a path"},
		{name: "two words", env: "lmk1.a b", wantErr: "not a key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdin = strings.NewReader(tc.stdin)
			defer func() { stdin = os.Stdin }()
			got, err := resolveAuthKey(tc.flag, tc.file, env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "0123456789abcdef") {
					t.Fatalf("error leaks the key: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// The key read from LANMESH_AUTH_KEY reaches the agent through `lanmesh up`.
func TestUpAuthKeyFromEnvAndFile(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "l.sock")
	b := &scripted{}
	srv, err := localapi.Listen(sock, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })

	t.Setenv(authKeyEnv, "lmk1.env.secret")
	var out, errb bytes.Buffer
	if code := run([]string{"--socket", sock, "up", "--login-server", "https://198.18.0.2"}, &out, &errb); code != 0 || b.up.AuthKey != "lmk1.env.secret" {
		t.Fatalf("up with %s = %d %q, key %q", authKeyEnv, code, errb.String(), b.up.AuthKey)
	}
	file := filepath.Join(t.TempDir(), "k")
	os.WriteFile(file, []byte("lmk1.file.secret\n"), 0o600)
	if code := run([]string{"--socket", sock, "up", "--login-server", "https://198.18.0.2", "--auth-key-file", file}, &out, &errb); code != 0 || b.up.AuthKey != "lmk1.file.secret" {
		t.Fatalf("up --auth-key-file = %d %q, key %q", code, errb.String(), b.up.AuthKey)
	}
}
