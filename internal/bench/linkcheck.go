package bench

import (
	"debug/buildinfo"
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// RouterForbidden is what cmd/lanmesh must never link: each makes the
// linker keep every exported method (net/rpc, templates) or costs megabytes
// (gRPC, go-plugin); DESIGN.md "The router binary's budget" has numbers.
// A trailing "/..." also matches subpackages.
var RouterForbidden = []string{
	"net/rpc/...",
	"text/template",
	"html/template",
	"google.golang.org/grpc/...",
	"github.com/hashicorp/go-plugin/...",
}

// matchPattern reports whether a package or module path matches a pattern
// of RouterForbidden's form.
func matchPattern(pattern, path string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

// LinkedPackages returns the Go packages that have at least one function in
// the ELF binary at path, with the function count. It reads the pclntab,
// which the runtime needs and `-ldflags=-s` keeps, so it works on stripped
// binaries where `go tool nm` finds no symbols.
func LinkedPackages(path string) (map[string]int, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	pcln := f.Section(".gopclntab")
	text := f.Section(".text")
	if pcln == nil || text == nil {
		return nil, fmt.Errorf("%s: no .gopclntab or .text section: not a Go ELF binary", path)
	}
	data, err := pcln.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: read .gopclntab: %w", path, err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return nil, fmt.Errorf("%s: parse pclntab: %w", path, err)
	}
	if len(tab.Funcs) == 0 {
		return nil, fmt.Errorf("%s: pclntab lists no functions", path)
	}
	pkgs := make(map[string]int)
	for _, fn := range tab.Funcs {
		if p := fn.PackageName(); p != "" {
			pkgs[p]++
		}
	}
	return pkgs, nil
}

// Stripped reports whether the ELF binary has no symbol table, i.e. was
// linked with -s; sizes of unstripped binaries are not comparable.
func Stripped(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	_, err = f.Symbols()
	if errors.Is(err, elf.ErrNoSymbols) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: read symbols: %w", path, err)
	}
	return false, nil
}

// ForbiddenLinks lists what of forbidden the binary links, both as packages
// (from the pclntab) and as modules (from the embedded build info, what
// `go version -m` prints). Empty means clean.
func ForbiddenLinks(path string, forbidden []string) ([]string, error) {
	pkgs, err := LinkedPackages(path)
	if err != nil {
		return nil, err
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: read build info: %w", path, err)
	}
	var found []string
	for p, n := range pkgs {
		for _, pat := range forbidden {
			if matchPattern(pat, p) {
				found = append(found, fmt.Sprintf("package %s (%d funcs)", p, n))
			}
		}
	}
	for _, m := range bi.Deps {
		for _, pat := range forbidden {
			if matchPattern(pat, m.Path) {
				found = append(found, "module "+m.Path+"@"+m.Version)
			}
		}
	}
	sort.Strings(found)
	return slices.Compact(found), nil
}
