package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"
)

// Limits on a policy file; past them Parse refuses with a clear error
// rather than spending unbounded time or memory on it.
const (
	MaxPolicyBytes = 1 << 20
	MaxNesting     = 32   // JSON nesting depth
	MaxACLs        = 2000 // acls entries
	MaxTests       = 2000
	MaxSSH         = 1000
	MaxListLen     = 5000 // entries in any one src/dst/members list
	MaxGroupDepth  = 16   // groups inside groups
	maxErrors      = 20   // errors reported at once
)

// Error is one problem in a policy file, placed at a line and column.
type Error struct {
	File string
	Line int // 1-based; 0 when unknown
	Col  int // 1-based byte column
	Path string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
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

// errAt makes an Error for the value at path p.
func (s *source) errAt(p path, format string, args ...any) *Error {
	e := &Error{File: s.name, Path: p.String(), Msg: fmt.Sprintf(format, args...)}
	if v := s.tree.Find(p.pointer()); v != nil {
		e.Line, e.Col = s.lineCol(v.StartOffset)
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
// strictly into raw.
func parseDocument(name string, b []byte, raw *rawPolicy) (*source, error) {
	if len(b) > MaxPolicyBytes {
		return nil, &Error{File: name, Msg: fmt.Sprintf("policy is %d bytes, more than the limit of %d", len(b), MaxPolicyBytes)}
	}
	if off, ok := checkNesting(b); !ok {
		s := &source{name: name, raw: b}
		e := &Error{File: name, Msg: fmt.Sprintf("nested deeper than %d levels", MaxNesting)}
		e.Line, e.Col = s.lineCol(off)
		return nil, e
	}
	tree, err := hujson.Parse(b)
	if err != nil {
		e := &Error{File: name, Msg: err.Error()}
		if m := hujsonErrRE.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Col, _ = strconv.Atoi(m[2])
			e.Msg = m[3]
		}
		return nil, e
	}
	tree.Standardize()
	s := &source{name: name, raw: b, tree: tree}
	if tree.Value.Kind() != '{' {
		return nil, s.errAt(nil, "policy must be a JSON object")
	}
	if errs := checkKeys(s, &s.tree, nil); len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	dec := json.NewDecoder(bytes.NewReader(tree.Pack()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(raw); err != nil {
		return nil, s.decodeError(err)
	}
	return s, nil
}

// decodeError places an encoding/json error in the file.
func (s *source) decodeError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		var p path
		if te.Field != "" {
			for _, f := range strings.Split(te.Field, ".") {
				if i, err := strconv.Atoi(f); err == nil {
					p = p.add(i)
				} else {
					p = p.add(f)
				}
			}
		}
		e := s.errAt(p, "expected %s, found JSON %s", goTypeName(te.Type.String()), te.Value)
		if e.Line == 0 {
			e.Line, e.Col = s.lineCol(int(te.Offset))
		}
		return e
	case errors.As(err, &se):
		e := &Error{File: s.name, Msg: se.Error()}
		e.Line, e.Col = s.lineCol(int(se.Offset))
		return e
	}
	return &Error{File: s.name, Msg: err.Error()}
}

func goTypeName(t string) string {
	switch {
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "policy."), strings.HasPrefix(t, "*policy."):
		return "an object"
	}
	return t
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

// objectKeys lists the keys the parser accepts, per kind of object.
// Tailscale matches keys case-insensitively ("ACLs" and "acls"), so do we.
var objectKeys = map[string][]string{
	"top":           {"groups", "tagOwners", "hosts", "acls", "autoApprovers", "ssh", "tests"},
	"acl":           {"action", "src", "dst", "proto"},
	"ssh":           {"action", "src", "dst", "users", "checkPeriod"},
	"test":          {"src", "accept", "deny", "proto"},
	"autoApprovers": {"routes", "exitNode"},
}

// checkKeys walks the tree: no duplicate keys anywhere (JSON would keep
// the last silently, which hides mistakes in access rules) and no keys
// the parser does not know, each error placed at the key.
func checkKeys(s *source, v *hujson.Value, p path) []*Error {
	var errs []*Error
	switch t := v.Value.(type) {
	case *hujson.Object:
		kind := objectKind(p)
		seen := map[string]bool{}
		for i := range t.Members {
			m := &t.Members[i]
			name, err := strconv.Unquote(string(m.Name.Value.(hujson.Literal)))
			if err != nil {
				name = string(m.Name.Value.(hujson.Literal))
			}
			e := func(format string, args ...any) {
				ee := &Error{File: s.name, Path: p.String(), Msg: fmt.Sprintf(format, args...)}
				ee.Line, ee.Col = s.lineCol(m.Name.StartOffset)
				errs = append(errs, ee)
			}
			low := strings.ToLower(name)
			if seen[low] {
				e("duplicate key %q", name)
			}
			seen[low] = true
			if known, ok := objectKeys[kind]; ok && !containsFold(known, name) {
				e("unknown field %q (known: %s)", name, strings.Join(known, ", "))
				continue
			}
			if c := canonicalKey(kind, name); c != name && len(c) == len(name) && len(m.Name.Value.(hujson.Literal)) == len(c)+2 {
				// Same length keeps every offset valid.
				m.Name.Value = hujson.Literal(strconv.Quote(c))
				name = c
			}
			errs = append(errs, checkKeys(s, &m.Value, p.add(name))...)
		}
	case *hujson.Array:
		if len(t.Elements) > MaxListLen && len(p) > 1 {
			errs = append(errs, s.errAt(p, "list has %d entries, more than the limit of %d", len(t.Elements), MaxListLen))
		}
		for i := range t.Elements {
			errs = append(errs, checkKeys(s, &t.Elements[i], p.add(i))...)
		}
	}
	if len(errs) > maxErrors {
		errs = errs[:maxErrors]
	}
	return errs
}

func objectKind(p path) string {
	switch {
	case len(p) == 0:
		return "top"
	case len(p) == 2 && p[0] == "acls":
		return "acl"
	case len(p) == 2 && p[0] == "ssh":
		return "ssh"
	case len(p) == 2 && p[0] == "tests":
		return "test"
	case len(p) == 1 && p[0] == "autoApprovers":
		return "autoApprovers"
	}
	return ""
}

// canonicalKey spells a known key the way the path functions expect, so
// that "ACLs" and "acls" land on the same path.
func canonicalKey(kind, name string) string {
	for _, k := range objectKeys[kind] {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return name
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// joinErrors returns errs as one error, one per line, in file order.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].Line != errs[j].Line {
			return errs[i].Line < errs[j].Line
		}
		return errs[i].Col < errs[j].Col
	})
	if len(errs) > maxErrors {
		errs = errs[:maxErrors]
	}
	if len(errs) == 1 {
		return errs[0]
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}
