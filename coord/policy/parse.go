package policy

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"
)

// Limits on a policy file; past them Parse refuses with a clear error
// rather than spending unbounded time or memory on it.
const (
	MaxPolicyBytes = 4 << 20 // real policies of over 1 MB exist
	MaxNesting     = 32      // JSON nesting depth
	MaxACLs        = 2000    // acls entries
	MaxTests       = 2000
	MaxSSH         = 1000
	MaxListLen     = 5000 // entries in any one src/dst/members list
	MaxGroupDepth  = 16   // groups inside groups
	maxErrors      = 500  // errors reported at once; more are counted
)

// Error is one problem in a policy file, placed at a line and column.
type Error struct {
	File string
	Line int // 1-based; 0 when unknown
	Col  int // 1-based byte column
	Path string
	Msg  string
	// Warning marks a finding that does not refuse the policy (a
	// Tailscale setting accepted without effect, a normalized prefix).
	Warning bool
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Warning {
		b.WriteString("warning: ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// source maps JSON paths back to places in the original HuJSON bytes.
// hujson.Standardize keeps byte offsets, so offsets in the standardized
// tree are offsets in what the user wrote.
type source struct {
	name string
	raw  []byte
	tree hujson.Value
}

func (s *source) lineCol(off int) (int, int) {
	if off < 0 || off > len(s.raw) {
		return 0, 0
	}
	line := 1 + bytes.Count(s.raw[:off], []byte("\n"))
	col := 1 + off - (bytes.LastIndexByte(s.raw[:off], '\n') + 1)
	return line, col
}

// errAt makes an Error for the value at path p. When p is not in the
// file (a missing key), the error is placed at the nearest enclosing
// value that is, so every error has a line and column.
func (s *source) errAt(p path, format string, args ...any) *Error {
	e := &Error{File: s.name, Path: p.String(), Msg: fmt.Sprintf(format, args...)}
	if s.raw == nil {
		return e
	}
	for q := p; ; q = q[:len(q)-1] {
		if v := s.tree.Find(q.pointer()); v != nil {
			e.Line, e.Col = s.lineCol(v.StartOffset)
			break
		}
		if len(q) == 0 {
			break
		}
	}
	return e
}

// path is a location in the policy document: strings are object keys,
// ints are array indexes.
type path []any

func (p path) add(k any) path {
	q := make(path, len(p), len(p)+1)
	copy(q, p)
	return append(q, k)
}

// String renders p the way users read it: acls[1].dst[0], groups["group:x"].
func (p path) String() string {
	var b strings.Builder
	for i, k := range p {
		switch k := k.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		case string:
			if i == 0 {
				b.WriteString(k)
			} else if isIdent(k) {
				b.WriteString("." + k)
			} else {
				fmt.Fprintf(&b, "[%q]", k)
			}
		}
	}
	return b.String()
}

func isIdent(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return s != ""
}

// pointer renders p as an RFC 6901 JSON pointer for hujson.Value.Find.
func (p path) pointer() string {
	var b strings.Builder
	for _, k := range p {
		b.WriteByte('/')
		switch k := k.(type) {
		case int:
			b.WriteString(strconv.Itoa(k))
		case string:
			b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(k))
		}
	}
	return b.String()
}

var hujsonErrRE = regexp.MustCompile(`^hujson: line (\d+), column (\d+): (.*)$`)

// parseDocument checks size and nesting, parses HuJSON and decodes it
// into raw. An error is returned only when nothing can be decoded; type
// errors, unknown and unsupported keys are in the decoder.
func parseDocument(name string, b []byte, raw *rawPolicy) (*source, *decoder, error) {
	if len(b) > MaxPolicyBytes {
		return nil, nil, &Error{File: name, Msg: fmt.Sprintf("policy is %d bytes, more than the limit of %d", len(b), MaxPolicyBytes)}
	}
	if off, ok := checkNesting(b); !ok {
		s := &source{name: name, raw: b}
		e := &Error{File: name, Msg: fmt.Sprintf("nested deeper than %d levels", MaxNesting)}
		e.Line, e.Col = s.lineCol(off)
		return nil, nil, e
	}
	tree, err := hujson.Parse(b)
	if err != nil {
		e := &Error{File: name, Msg: err.Error()}
		if m := hujsonErrRE.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Col, _ = strconv.Atoi(m[2])
			e.Msg = m[3]
		}
		return nil, nil, e
	}
	tree.Standardize()
	s := &source{name: name, raw: b, tree: tree}
	if tree.Value.Kind() != '{' {
		return nil, nil, s.errAt(nil, "policy must be a JSON object")
	}
	d := &decoder{s: s, badPaths: map[string]bool{}}
	d.decode(&s.tree, nil, reflect.ValueOf(raw).Elem())
	return s, d, nil
}

// checkNesting reports the offset where nesting first exceeds MaxNesting,
// skipping strings and comments. It runs before hujson.Parse, which
// recurses without a limit.
func checkNesting(b []byte) (int, bool) {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '/':
			if i+1 < len(b) && b[i+1] == '/' {
				for i < len(b) && b[i] != '\n' {
					i++
				}
			} else if i+1 < len(b) && b[i+1] == '*' {
				end := bytes.Index(b[i+2:], []byte("*/"))
				if end < 0 {
					return 0, true // hujson reports the unterminated comment
				}
				i += end + 3
			}
		case '[', '{':
			depth++
			if depth > MaxNesting {
				return i, false
			}
		case ']', '}':
			depth--
		}
	}
	return 0, true
}

func sortErrors(errs []*Error) {
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].Line != errs[j].Line {
			return errs[i].Line < errs[j].Line
		}
		return errs[i].Col < errs[j].Col
	})
}

// joinErrors returns errs as one error, one per line, in file order.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	sortErrors(errs)
	more := len(errs) - maxErrors
	if more > 0 {
		errs = errs[:maxErrors]
	}
	if len(errs) == 1 {
		return errs[0]
	}
	list := make([]error, len(errs), len(errs)+1)
	for i, e := range errs {
		list[i] = e
	}
	if more > 0 {
		list = append(list, fmt.Errorf("... and %d more errors", more))
	}
	return errors.Join(list...)
}
