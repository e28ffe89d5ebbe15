// Package rawskip reports tests that skip without going through
// internal/testenv: a raw t.Skip, t.Skipf or t.SkipNow (on testing.T, B,
// F, TB or any interface with those methods) anywhere but in that package.
// testenv decides whether a skip is allowed: under CI=true a test that
// lacks root, a tool or a kernel feature fails instead of skipping.
package rawskip

import (
	"go/ast"
	"go/types"
	"strings"

	"golang.org/x/tools/go/analysis"
)

// Analyzer is the rawskip check.
var Analyzer = &analysis.Analyzer{
	Name: "rawskip",
	Doc:  "report t.Skip/t.Skipf/t.SkipNow outside internal/testenv (use testenv.Unavailable or testenv.Optional)",
	Run:  run,
}

// helperPkg is the one package allowed to skip.
const helperPkg = "github.com/lanmesh/lanmesh/internal/testenv"

func run(pass *analysis.Pass) (any, error) {
	if strings.TrimSuffix(pass.Pkg.Path(), "_test") == helperPkg {
		return nil, nil
	}
	for _, f := range pass.Files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			switch sel.Sel.Name {
			case "Skip", "Skipf", "SkipNow":
			default:
				return true
			}
			fn, ok := pass.TypesInfo.Uses[sel.Sel].(*types.Func)
			if !ok {
				return true
			}
			sig := fn.Type().(*types.Signature)
			if sig.Recv() == nil {
				return true
			}
			_, iface := sig.Recv().Type().Underlying().(*types.Interface)
			if (fn.Pkg() != nil && fn.Pkg().Path() == "testing") || iface {
				pass.Reportf(call.Pos(), "raw %s: skip through internal/testenv (testenv.Unavailable fails under CI=true; testenv.Optional for opt-in tests)", types.ExprString(call.Fun))
			}
			return true
		})
	}
	return nil, nil
}
