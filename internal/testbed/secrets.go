package testbed

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Secret is a value no log may hold (S11): an auth key, a node private
// key, an OIDC code or token, a session cookie, a password. Name says
// what it is in a finding; the value itself is never printed.
type Secret struct {
	Name  string
	Value string
}

// forms are the ways a secret can show up in a log: as is, URL-escaped
// (codes and states in logged URLs), and for raw bytes given as base64 or
// hex, in the other of the two.
func (s Secret) forms() []string {
	out := []string{s.Value}
	if e := url.QueryEscape(s.Value); e != s.Value {
		out = append(out, e)
	}
	if b, err := base64.StdEncoding.DecodeString(s.Value); err == nil && len(b) >= 16 {
		out = append(out, hex.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b))
	}
	if b, err := hex.DecodeString(s.Value); err == nil && len(b) >= 16 {
		out = append(out, base64.StdEncoding.EncodeToString(b))
	}
	return out
}

// minSecretLen keeps the scan from matching short, common strings: a
// value this short proves nothing either way.
const minSecretLen = 8

// ScanLogs looks for every secret in every file under dirs (logs of
// processes the testbed started: coord, agents, relays, plugins) and in
// texts (logs a test captured in memory, by name). It returns one finding
// per secret and place, naming both but never the value, and an error
// when a secret is too short to be searched for or a directory cannot be
// read: a scan that proves nothing must not pass.
func ScanLogs(secrets []Secret, dirs []string, texts map[string]string) ([]string, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("testbed: no secrets to scan for: the check would prove nothing")
	}
	for _, s := range secrets {
		if len(s.Value) < minSecretLen {
			return nil, fmt.Errorf("testbed: secret %s is %d characters, too short to search logs for", s.Name, len(s.Value))
		}
	}
	places := map[string]string{}
	for name, t := range texts {
		places[name] = t
	}
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			places[p] = string(b)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("testbed: scan logs in %s: %w", d, err)
		}
	}
	if len(places) == 0 {
		return nil, fmt.Errorf("testbed: no logs to scan in %v", dirs)
	}
	var hits []string
	for place, text := range places {
		for _, s := range secrets {
			for _, f := range s.forms() {
				if strings.Contains(text, f) {
					hits = append(hits, fmt.Sprintf("%s: contains %s", place, s.Name))
					break
				}
			}
		}
	}
	sort.Strings(hits)
	return hits, nil
}
