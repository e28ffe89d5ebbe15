// Package secretcmp reports secrets compared in non-constant time (S8).
//
// A value is a secret when its type is marked with a `//lanmesh:secret`
// comment on its declaration (key.NodePrivate, key.MachinePrivate,
// key.Secret, ...), or when it is a string, []byte or byte array whose
// name says it is one: a word of the identifier, field or method name is
// secret, token, tok, password, mac, hmac, nonce, challenge, credential,
// cred, fingerprint, fp, pin, cookie, csrf, hash, psk or private, or the
// name holds "auth" and "key". Such values may be compared only with
// key.Equal, key.Secret.Equal, hmac.Equal or crypto/subtle; the analyzer
// reports ==, !=, switch, bytes.Equal, bytes.Compare, strings.Compare,
// strings.EqualFold, slices.Equal and reflect.DeepEqual on them.
//
// In a package that declares a secret type (internal/key) every string or
// byte comparison counts, so key.Equal itself cannot become bytes.Equal.
// Comparing with a constant (tok == "") leaks nothing and is allowed.
// Test files are not checked. A line that compares a value whose name
// only looks secret (a public key's hash, say) says so with a
// `//lint:notsecret <why>` comment.
package secretcmp

import (
	"go/ast"
	"go/token"
	"go/types"
	"strings"
	"unicode"

	"golang.org/x/tools/go/analysis"
)

// Analyzer is the secretcmp check.
var Analyzer = &analysis.Analyzer{
	Name:      "secretcmp",
	Doc:       "report secrets (keys, tokens, MACs, nonces, credentials) compared in non-constant time (S8)",
	Run:       run,
	FactTypes: []analysis.Fact{new(isSecret)},
}

// isSecret marks a type declared with a //lanmesh:secret comment, so that
// packages importing it see the mark too.
type isSecret struct{}

func (*isSecret) AFact()         {}
func (*isSecret) String() string { return "secret" }

const (
	markSecret = "lanmesh:secret"
	markPublic = "lint:notsecret"
)

// secretWords are the name words that make a string or byte value a secret.
var secretWords = map[string]bool{
	"secret": true, "secrets": true, "token": true, "tokens": true, "tok": true,
	"password": true, "passwd": true, "mac": true, "hmac": true, "nonce": true,
	"challenge": true, "credential": true, "credentials": true, "cred": true,
	"creds": true, "fingerprint": true, "fp": true, "pin": true, "cookie": true,
	"csrf": true, "hash": true, "psk": true, "private": true, "priv": true,
}

// variableTimeFuncs compare in non-constant time; the key is pkgpath.Name.
var variableTimeFuncs = map[string]bool{
	"bytes.Equal": true, "bytes.Compare": true, "strings.Compare": true,
	"strings.EqualFold": true, "slices.Equal": true, "reflect.DeepEqual": true,
}

func run(pass *analysis.Pass) (any, error) {
	// Export the marks of this package's secret types first. A package
	// that declares secrets (internal/key) is checked strictly: every
	// comparison of bytes or strings in it counts, so that key.Equal itself
	// cannot quietly become bytes.Equal.
	strict := false
	for _, f := range pass.Files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				if hasMark(gd.Doc, markSecret) || hasMark(ts.Doc, markSecret) || hasMark(ts.Comment, markSecret) {
					if obj := pass.TypesInfo.Defs[ts.Name]; obj != nil {
						pass.ExportObjectFact(obj, new(isSecret))
						strict = true
					}
				}
			}
		}
	}
	for _, f := range pass.Files {
		name := pass.Fset.File(f.Pos()).Name()
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		allowed := allowedLines(pass.Fset, f)
		report := func(n ast.Node, format string, args ...any) {
			if allowed[pass.Fset.Position(n.Pos()).Line] {
				return
			}
			pass.Reportf(n.Pos(), format, args...)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BinaryExpr:
				if n.Op != token.EQL && n.Op != token.NEQ {
					return true
				}
				if isConst(pass, n.X) || isConst(pass, n.Y) {
					return true
				}
				if what := secretOperand(pass, strict, n.X, n.Y); what != "" {
					report(n, "secret %s compared with %s: use key.Equal or crypto/subtle (S8)", what, n.Op)
				}
			case *ast.SwitchStmt:
				if n.Tag != nil {
					if what := secretOperand(pass, strict, n.Tag); what != "" {
						report(n, "switch on secret %s compares it in non-constant time: use key.Equal or crypto/subtle (S8)", what)
					}
				}
			case *ast.CallExpr:
				fn := calleeName(pass, n)
				if !variableTimeFuncs[fn] || len(n.Args) < 2 {
					return true
				}
				if isConst(pass, n.Args[0]) || isConst(pass, n.Args[1]) {
					return true
				}
				if what := secretOperand(pass, strict, n.Args[0], n.Args[1]); what != "" {
					report(n, "secret %s compared with %s: use key.Equal or crypto/subtle (S8)", what, fn)
				}
			}
			return true
		})
	}
	return nil, nil
}

// secretOperand returns a description of the first operand that is a
// secret, or "".
func secretOperand(pass *analysis.Pass, strict bool, exprs ...ast.Expr) string {
	for _, e := range exprs {
		if t := pass.TypesInfo.TypeOf(e); t != nil && isSecretType(pass, t) {
			return types.ExprString(e)
		}
		inner := strip(pass, e)
		if t := pass.TypesInfo.TypeOf(inner); t != nil && isSecretType(pass, t) {
			return types.ExprString(e)
		}
		if !bytesLike(pass.TypesInfo.TypeOf(e)) {
			continue
		}
		if strict || secretName(exprName(inner)) {
			return types.ExprString(e)
		}
	}
	return ""
}

// strip removes what does not change which value is compared: parens,
// slicing, and conversions such as string(b) or []byte(s).
func strip(pass *analysis.Pass, e ast.Expr) ast.Expr {
	for {
		switch x := e.(type) {
		case *ast.ParenExpr:
			e = x.X
		case *ast.SliceExpr:
			e = x.X
		case *ast.StarExpr:
			e = x.X
		case *ast.CallExpr:
			if tv, ok := pass.TypesInfo.Types[x.Fun]; ok && tv.IsType() && len(x.Args) == 1 {
				e = x.Args[0]
				continue
			}
			return e
		default:
			return e
		}
	}
}

// exprName is the name that says what a value is: the identifier, the
// selected field, or the called function or method.
func exprName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return x.Sel.Name
	case *ast.CallExpr:
		return exprName(x.Fun)
	case *ast.IndexExpr:
		return exprName(x.X)
	}
	return ""
}

// secretName splits a Go name into its words (camelCase, snake_case) and
// reports whether one of them names a secret.
func secretName(name string) bool {
	if name == "" {
		return false
	}
	words := splitWords(name)
	auth, key := false, false
	for _, w := range words {
		if secretWords[w] {
			return true
		}
		auth = auth || w == "auth"
		key = key || w == "key" || w == "keys"
	}
	return auth && key
}

func splitWords(name string) []string {
	var words []string
	var cur []rune
	rs := []rune(name)
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	for i, r := range rs {
		switch {
		case r == '_' || unicode.IsDigit(r):
			flush()
			continue
		case unicode.IsUpper(r):
			// A new word starts at an upper-case letter that follows a
			// lower-case one, or that ends an acronym (the T in "HMACToken").
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]) && unicode.IsUpper(rs[i-1]))) {
				flush()
			}
		}
		cur = append(cur, r)
	}
	flush()
	return words
}

// bytesLike reports whether t is a string, []byte or [N]byte (or a named
// type over one): the types secrets are carried in.
func bytesLike(t types.Type) bool {
	if t == nil {
		return false
	}
	switch u := t.Underlying().(type) {
	case *types.Basic:
		return u.Info()&types.IsString != 0
	case *types.Slice:
		return isByte(u.Elem())
	case *types.Array:
		return isByte(u.Elem())
	}
	return false
}

func isByte(t types.Type) bool {
	b, ok := t.Underlying().(*types.Basic)
	return ok && (b.Kind() == types.Byte || b.Kind() == types.Uint8)
}

func isSecretType(pass *analysis.Pass, t types.Type) bool {
	t = types.Unalias(t)
	if a, ok := t.Underlying().(*types.Array); ok {
		if _, named := t.(*types.Named); !named {
			return isSecretType(pass, a.Elem())
		}
	}
	n, ok := t.(*types.Named)
	if !ok {
		return false
	}
	return pass.ImportObjectFact(n.Obj(), new(isSecret))
}

func isConst(pass *analysis.Pass, e ast.Expr) bool {
	tv, ok := pass.TypesInfo.Types[e]
	return ok && (tv.Value != nil || tv.IsNil())
}

func calleeName(pass *analysis.Pass, call *ast.CallExpr) string {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	fn, ok := pass.TypesInfo.Uses[sel.Sel].(*types.Func)
	if !ok || fn.Pkg() == nil {
		return ""
	}
	if sig, ok := fn.Type().(*types.Signature); ok && sig.Recv() != nil {
		return ""
	}
	return fn.Pkg().Path() + "." + fn.Name()
}

func hasMark(cg *ast.CommentGroup, mark string) bool {
	if cg == nil {
		return false
	}
	for _, c := range cg.List {
		if strings.Contains(c.Text, mark) {
			return true
		}
	}
	return false
}

// allowedLines are the lines of f that carry a //lint:notsecret comment.
func allowedLines(fset *token.FileSet, f *ast.File) map[int]bool {
	m := map[int]bool{}
	for _, cg := range f.Comments {
		for _, c := range cg.List {
			if strings.Contains(c.Text, markPublic) {
				m[fset.Position(c.Pos()).Line] = true
			}
		}
	}
	return m
}
