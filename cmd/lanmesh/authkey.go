package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// authKeyEnv is where `lanmesh up` finds the auth key when no flag names
// one: a key in argv is visible to every local user in /proc/*/cmdline.
const authKeyEnv = "LANMESH_AUTH_KEY"

// maxAuthKeyBytes bounds what is read from a key file or stdin; a key is
// under 100 bytes.
const maxAuthKeyBytes = 4096

// stdin is where "--auth-key -" reads from (tests replace it).
var stdin io.Reader = os.Stdin

// resolveAuthKey returns the auth key from, in order: --auth-key (a key,
// "file:PATH" or "-" for stdin), --auth-key-file PATH, or the environment
// variable LANMESH_AUTH_KEY. "" means none was given (reconnect or change
// preferences only).
func resolveAuthKey(flagVal, file string, getenv func(string) string) (string, error) {
	if flagVal != "" && file != "" {
		return "", errors.New("--auth-key and --auth-key-file both given: use one")
	}
	switch {
	case flagVal == "-":
		return readAuthKey("stdin", stdin)
	case strings.HasPrefix(flagVal, "file:"):
		file = strings.TrimPrefix(flagVal, "file:")
		if file == "" {
			return "", errors.New(`--auth-key file: needs a path, e.g. --auth-key file:/etc/lanmesh/authkey`)
		}
	case flagVal != "":
		return checkAuthKey("--auth-key", flagVal)
	case file == "":
		if v := getenv(authKeyEnv); v != "" {
			return checkAuthKey(authKeyEnv, v)
		}
		return "", nil
	}
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("auth key file: %w", err)
	}
	defer f.Close()
	return readAuthKey(file, f)
}

// readAuthKey reads the first line of r (a file or stdin).
func readAuthKey(from string, r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, maxAuthKeyBytes))
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("auth key from %s: %w", from, err)
	}
	key := strings.TrimSpace(line)
	if key == "" {
		return "", fmt.Errorf("auth key from %s: empty; it should hold the key from \"lanmesh-coord keys create\"", from)
	}
	return checkAuthKey(from, key)
}

// checkAuthKey rejects what cannot be a key, without echoing it (S11).
func checkAuthKey(from, key string) (string, error) {
	key = strings.TrimSpace(key)
	if len(key) > 512 || strings.ContainsAny(key, " \t\r\n") {
		return "", fmt.Errorf("auth key from %s: not a key (a single line lmk1.<id>.<secret>.<fingerprint>, as \"lanmesh-coord keys create\" prints)", from)
	}
	return key, nil
}
