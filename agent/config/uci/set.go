package uci

import (
	"fmt"
	"os"
	"strings"

	"github.com/lanmesh/lanmesh/internal/atomicfile"
)

// Set rewrites the UCI file at path so that section (by name) holds key
// with values: as one "option" line when list is false (exactly one
// value), as "list" lines otherwise (none removes the key). Earlier
// option and list lines of key in that section are dropped; every other
// line, comments included, is kept. The file is replaced atomically and
// must parse before and after.
func Set(path, section, key string, values []string, list bool) error {
	if !validName(section) || !validName(key) {
		return fmt.Errorf("uci set %s.%s: names use letters, digits and _ only", section, key)
	}
	if !list && len(values) != 1 {
		return fmt.Errorf("uci set %s.%s: an option has exactly one value, got %d", section, key, len(values))
	}
	for _, v := range values {
		if strings.ContainsAny(v, "'\n\r") || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			return fmt.Errorf("uci set %s.%s: value %q has a quote or control character", section, key, v)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("uci set: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("uci set: %w", err)
	}
	out, err := setBytes(path, b, section, key, values, list)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, out, fi.Mode().Perm())
}

func setBytes(path string, b []byte, section, key string, values []string, list bool) ([]byte, error) {
	if _, err := Parse(path, b); err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	var kept []string
	in, found := false, false
	insertAt := -1 // index in kept after which the new lines go
	for _, ln := range lines {
		toks, _ := tokenize(ln) // Parse accepted every line
		if len(toks) > 0 && toks[0] == "config" {
			in = len(toks) >= 3 && toks[2] == section
			if in {
				found = true
				kept = append(kept, ln)
				insertAt = len(kept) - 1
				continue
			}
		}
		if in && len(toks) >= 2 && (toks[0] == "option" || toks[0] == "list") {
			if toks[1] == key {
				continue
			}
			kept = append(kept, ln)
			insertAt = len(kept) - 1
			continue
		}
		kept = append(kept, ln)
	}
	if !found {
		return nil, fmt.Errorf("uci set %s: no section named %q", path, section)
	}
	var add []string
	for _, v := range values {
		word := "option"
		if list {
			word = "list"
		}
		add = append(add, fmt.Sprintf("\t%s %s '%s'", word, key, v))
	}
	res := append([]string{}, kept[:insertAt+1]...)
	res = append(res, add...)
	res = append(res, kept[insertAt+1:]...)
	out := []byte(strings.Join(res, "\n"))
	if _, err := Parse(path, out); err != nil {
		return nil, fmt.Errorf("uci set %s.%s: result does not parse: %w", section, key, err)
	}
	return out, nil
}
