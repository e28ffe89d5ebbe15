package policy

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"
)

// The policy is decoded by walking the HuJSON tree rather than through
// encoding/json, which stops at the first type error and knows no
// positions: here every wrong type, unknown key and duplicate is
// reported at once, each at its place in the file.
//
// Three field types say how a Tailscale section lanmesh does not
// compile is treated, so the raw structs are the one list of what is
// known:
//   - noEffect: accepted with a warning naming it (tailnet-wide
//     settings that do not change who can reach what, e.g. derpMap);
//   - unsupported: refused with "not supported yet" (it would change
//     who can reach what, so ignoring it would be wrong);
//   - rawJSON: any JSON, kept as written (grant app capabilities).
// A field's `why` tag is the reason shown to the user.

type noEffect struct{ set bool }

type unsupported struct{ set bool }

type rawJSON []byte

var (
	noEffectType    = reflect.TypeOf(noEffect{})
	unsupportedType = reflect.TypeOf(unsupported{})
	rawJSONType     = reflect.TypeOf(rawJSON(nil))
)

type decoder struct {
	s        *source
	errs     []*Error
	warns    []*Error
	badPaths map[string]bool // JSON pointers of values of the wrong type
}

func (d *decoder) failAt(v *hujson.Value, p path, format string, args ...any) {
	if d.badPaths != nil {
		d.badPaths[p.pointer()] = true
	}
	e := &Error{File: d.s.name, Path: p.String(), Msg: fmt.Sprintf(format, args...)}
	e.Line, e.Col = d.s.lineCol(v.StartOffset)
	d.errs = append(d.errs, e)
}

func (d *decoder) warnAt(off int, p path, format string, args ...any) {
	e := &Error{File: d.s.name, Path: p.String(), Msg: fmt.Sprintf(format, args...), Warning: true}
	e.Line, e.Col = d.s.lineCol(off)
	d.warns = append(d.warns, e)
}

func kindName(v *hujson.Value) string {
	switch v.Value.Kind() {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '0':
		return "a number"
	}
	return "a value"
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "a number"
	case reflect.Slice:
		return "a list"
	}
	return "an object"
}

// decode fills rv from v; p is v's path.
func (d *decoder) decode(v *hujson.Value, p path, rv reflect.Value) {
	if lit, ok := v.Value.(hujson.Literal); ok && lit.Kind() == 'n' {
		return // null is the zero value, as in encoding/json
	}
	switch rv.Type() {
	case rawJSONType:
		rv.SetBytes(v.Pack())
		return
	}
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			rv.Set(reflect.New(rv.Type().Elem()))
		}
		d.decode(v, p, rv.Elem())
	case reflect.String, reflect.Bool, reflect.Int:
		lit, ok := v.Value.(hujson.Literal)
		want := map[reflect.Kind]hujson.Kind{reflect.String: '"', reflect.Bool: 't', reflect.Int: '0'}[rv.Kind()]
		k := hujson.Kind(0)
		if ok {
			k = lit.Kind()
			if k == 'f' {
				k = 't'
			}
		}
		if k != want {
			d.failAt(v, p, "expected %s, found %s", typeName(rv.Type()), kindName(v))
			return
		}
		if err := json.Unmarshal(lit, rv.Addr().Interface()); err != nil {
			d.failAt(v, p, "expected %s: %v", typeName(rv.Type()), err)
		}
	case reflect.Slice:
		arr, ok := v.Value.(*hujson.Array)
		if !ok {
			d.failAt(v, p, "expected a list, found %s", kindName(v))
			return
		}
		if len(arr.Elements) > MaxListLen && len(p) > 1 {
			d.failAt(v, p, "list has %d entries, more than the limit of %d", len(arr.Elements), MaxListLen)
			return
		}
		out := reflect.MakeSlice(rv.Type(), len(arr.Elements), len(arr.Elements))
		for i := range arr.Elements {
			d.decode(&arr.Elements[i], p.add(i), out.Index(i))
		}
		rv.Set(out)
	case reflect.Map:
		obj, ok := v.Value.(*hujson.Object)
		if !ok {
			d.failAt(v, p, "expected an object, found %s", kindName(v))
			return
		}
		if rv.IsNil() {
			rv.Set(reflect.MakeMapWithSize(rv.Type(), len(obj.Members)))
		}
		seen := map[string]bool{}
		for i := range obj.Members {
			m := &obj.Members[i]
			name := memberName(m)
			if seen[name] {
				d.failAt(&m.Name, p, "duplicate key %q", name)
				continue
			}
			seen[name] = true
			ev := reflect.New(rv.Type().Elem()).Elem()
			d.decode(&m.Value, p.add(name), ev)
			rv.SetMapIndex(reflect.ValueOf(name), ev)
		}
	case reflect.Struct:
		obj, ok := v.Value.(*hujson.Object)
		if !ok {
			d.failAt(v, p, "expected an object, found %s", kindName(v))
			return
		}
		d.decodeStruct(obj, p, rv)
	default:
		d.failAt(v, p, "internal error: cannot decode into %s", rv.Type())
	}
}

func memberName(m *hujson.ObjectMember) string {
	lit, _ := m.Name.Value.(hujson.Literal)
	if s, err := strconv.Unquote(string(lit)); err == nil {
		return s
	}
	return string(lit)
}

// decodeStruct matches keys to fields by their json tag, ignoring case
// as Tailscale does ("ACLs" and "acls").
func (d *decoder) decodeStruct(obj *hujson.Object, p path, rv reflect.Value) {
	t := rv.Type()
	var known []string
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("json"); tag != "" && tag != "-" && t.Field(i).Tag.Get("hidden") == "" {
			known = append(known, tag)
		}
	}
	seen := map[string]bool{}
	for i := range obj.Members {
		m := &obj.Members[i]
		name := memberName(m)
		fi := -1
		for j := 0; j < t.NumField(); j++ {
			if tag := t.Field(j).Tag.Get("json"); tag != "" && strings.EqualFold(tag, name) {
				fi = j
				break
			}
		}
		if fi < 0 {
			d.failAt(&m.Name, p, "unknown field %q (known: %s)", name, strings.Join(known, ", "))
			continue
		}
		f := t.Field(fi)
		tag := f.Tag.Get("json")
		if seen[tag] {
			d.failAt(&m.Name, p, "duplicate key %q", name)
			continue
		}
		seen[tag] = true
		if tag != name && len(tag) == len(name) {
			// Spell the key the way paths do, so errors placed by path
			// find it; same length keeps every offset valid.
			if lit, ok := m.Name.Value.(hujson.Literal); ok && len(lit) == len(tag)+2 {
				m.Name.Value = hujson.Literal(strconv.Quote(tag))
			}
		}
		fp := p.add(tag)
		switch f.Type {
		case noEffectType:
			d.warnAt(m.Name.StartOffset, fp, "accepted without effect: %s", f.Tag.Get("why"))
			rv.Field(fi).Set(reflect.ValueOf(noEffect{set: true}))
			continue
		case unsupportedType:
			d.failAt(&m.Name, fp, "not supported yet: %s", f.Tag.Get("why"))
			continue
		}
		d.decode(&m.Value, fp, rv.Field(fi))
	}
}
