package lint_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// repoRoot is the module root: two levels up from internal/lint.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

func goTool(t *testing.T) string {
	t.Helper()
	return testenv.RequireTool(t, "go", "Go 1.26 in /usr/local/go")
}

// TestRepoPassesChecks runs cmd/lanmesh-vet (secretcmp for S8, rawskip for
// the CI skip rule) over the whole module, as `make lint` does, so that
// `go test ./...` fails too when a secret is compared with == or a test
// skips without internal/testenv.
func TestRepoPassesChecks(t *testing.T) {
	goBin, root := goTool(t), repoRoot(t)
	vet := filepath.Join(t.TempDir(), "lanmesh-vet")
	build := exec.Command(goBin, "build", "-o", vet, "./cmd/lanmesh-vet")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build lanmesh-vet: %v\n%s", err, out)
	}
	cmd := exec.Command(goBin, "vet", "-vettool="+vet, "./...")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go vet -vettool=lanmesh-vet ./... found problems: %v\n%s", err, out)
	}
}

// TestGoModTidy fails when `go mod tidy` would change go.mod or go.sum.
func TestGoModTidy(t *testing.T) {
	goBin, root := goTool(t), repoRoot(t)
	cmd := exec.Command(goBin, "mod", "tidy", "-diff")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go.mod/go.sum are not tidy (run go mod tidy): %v\n%s", err, out)
	}
}

// TestTidyCheckCatchesUntidy proves the tidy check can fail: a module that
// requires a dependency it does not use, with everything marked
// "// indirect" as go.mod once was, is reported.
func TestTidyCheckCatchesUntidy(t *testing.T) {
	goBin, dir := goTool(t), t.TempDir()
	gomod := "module example.com/untidy\n\ngo 1.26.0\n\nrequire golang.org/x/sync v0.24.0 // indirect\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goBin, "mod", "tidy", "-diff")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("go mod tidy -diff accepted an untidy go.mod:\n%s", out)
	}
	if !strings.Contains(string(out), "golang.org/x/sync") {
		t.Fatalf("diff does not name the unused module:\n%s", out)
	}
}
