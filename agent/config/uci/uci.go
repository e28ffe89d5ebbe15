package uci

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// MaxFileBytes bounds a UCI file; real ones are a few KiB.
const MaxFileBytes = 1 << 20

// Section is one "config TYPE [NAME]" block.
type Section struct {
	Type string
	Name string // "" for an anonymous section
	Line int    // where the section starts
	// Options holds "option" values; Lists holds "list" values in order.
	Options map[string]string
	Lists   map[string][]string
	// Lines records where each option or list was last set, for errors.
	Lines map[string]int
}

// File is a parsed UCI file.
type File struct {
	Path     string
	Package  string
	Sections []*Section
}

// Section returns the section called name, or nil.
func (f *File) Section(name string) *Section {
	for _, s := range f.Sections {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// OfType returns the sections of type typ in file order.
func (f *File) OfType(typ string) []*Section {
	var out []*Section
	for _, s := range f.Sections {
		if s.Type == typ {
			out = append(out, s)
		}
	}
	return out
}

// Values returns an option's value as a one-element list, or a list's
// values; UCI lets either spell a multi-valued setting.
func (s *Section) Values(key string) []string {
	if v, ok := s.Lists[key]; ok {
		return v
	}
	if v, ok := s.Options[key]; ok {
		return strings.Fields(v)
	}
	return nil
}

// Parse reads a UCI file. path is used only in error messages.
func Parse(path string, b []byte) (*File, error) {
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxFileBytes)
	}
	f := &File{Path: path}
	var cur *Section
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), MaxFileBytes)
	line := 0
	for sc.Scan() {
		line++
		toks, err := tokenize(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		if len(toks) == 0 {
			continue
		}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%s:%d: %s", path, line, fmt.Sprintf(format, a...))
		}
		switch toks[0] {
		case "package":
			if len(toks) != 2 {
				return nil, bad("want: package NAME")
			}
			f.Package = toks[1]
		case "config":
			if len(toks) < 2 || len(toks) > 3 {
				return nil, bad("want: config TYPE [NAME]")
			}
			if !validName(toks[1]) {
				return nil, bad("section type %q: use letters, digits and _ only", toks[1])
			}
			cur = &Section{Type: toks[1], Line: line, Options: map[string]string{}, Lists: map[string][]string{}, Lines: map[string]int{}}
			if len(toks) == 3 {
				if !validName(toks[2]) {
					return nil, bad("section name %q: use letters, digits and _ only", toks[2])
				}
				// A second block with the same name extends the first, as uci does.
				if prev := f.Section(toks[2]); prev != nil {
					if prev.Type != toks[1] {
						return nil, bad("section %q was type %q at line %d, now %q", toks[2], prev.Type, prev.Line, toks[1])
					}
					cur = prev
					continue
				}
				cur.Name = toks[2]
			}
			f.Sections = append(f.Sections, cur)
		case "option", "list":
			if cur == nil {
				return nil, bad("%s before any config section", toks[0])
			}
			if len(toks) != 3 {
				return nil, bad("want: %s NAME VALUE (quote values with spaces)", toks[0])
			}
			if !validName(toks[1]) {
				return nil, bad("%s name %q: use letters, digits and _ only", toks[0], toks[1])
			}
			if toks[0] == "option" {
				delete(cur.Lists, toks[1])
				cur.Options[toks[1]] = toks[2]
			} else {
				delete(cur.Options, toks[1])
				cur.Lists[toks[1]] = append(cur.Lists[toks[1]], toks[2])
			}
			cur.Lines[toks[1]] = line
		default:
			return nil, bad("unknown keyword %q (want package, config, option or list)", toks[0])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %v", path, line+1, err)
	}
	return f, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// tokenize splits a line the way uci's parser does: words separated by
// blanks, '...' literal, "..." with backslash escapes, # starts a comment
// outside quotes, and adjacent quoted parts join into one word.
func tokenize(s string) ([]string, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\r' || c == 0x7f {
			return nil, fmt.Errorf("control character 0x%02x at column %d", c, i+1)
		}
	}
	var toks []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			if inWord {
				toks = append(toks, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			i = len(s)
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			closed := false
			for ; i < len(s); i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
					cur.WriteByte(s[i])
					continue
				}
				if s[i] == '"' {
					closed = true
					break
				}
				cur.WriteByte(s[i])
			}
			if !closed {
				return nil, fmt.Errorf(`unterminated " quote`)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		toks = append(toks, cur.String())
	}
	return toks, nil
}
