package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// buildProg builds a one-file main package for linux/mipsle the way `make
// build` builds the router binary, so the checks run on a real binary.
func buildProg(t *testing.T, src string, strip bool) string {
	t.Helper()
	testenv.RequireTool(t, "go", "Go 1.26 in /usr/local/go")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module prog\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "prog")
	ld := ""
	if strip {
		ld = "-s -w"
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ld, "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=mipsle", "GOMIPS=softfloat", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

const cleanProg = `package main

import "fmt"

func main() { fmt.Println("hi") }
`

const rpcProg = `package main

import (
	"net/rpc"
	"os"
	"text/template"
)

func main() {
	rpc.NewServer()
	template.Must(template.New("x").Parse("{{.}}")).Execute(os.Stdout, 1)
}
`

func TestForbiddenLinks(t *testing.T) {
	t.Parallel()
	clean := buildProg(t, cleanProg, true)
	got, err := ForbiddenLinks(clean, RouterForbidden)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("clean binary: forbidden = %v, want none", got)
	}
	if s, err := Stripped(clean); err != nil || !s {
		t.Errorf("Stripped(clean) = %v, %v; want true", s, err)
	}

	bad := buildProg(t, rpcProg, true)
	got, err = ForbiddenLinks(bad, RouterForbidden)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(got, "\n")
	for _, want := range []string{"package net/rpc ", "package text/template "} {
		if !strings.Contains(joined, want) {
			t.Errorf("stripped binary with net/rpc and text/template: forbidden = %v, missing %q", got, want)
		}
	}
}

func TestSizeReport(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	prog := buildProg(t, cleanProg, true)
	unstripped := buildProg(t, cleanProg, false)
	for _, p := range []struct{ src, plat, name string }{
		{prog, "linux_mipsle", "lanmesh"},
		{unstripped, "linux_arm", "lanmesh"},
	} {
		b, err := os.ReadFile(p.src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(bin, p.plat), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, p.plat, p.name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := os.Stat(prog)
	tests := []struct {
		name    string
		targets []SizeTarget
		wantErr string // substring; "" means success
		wantMD  string
	}{
		{"within budget", []SizeTarget{{Name: "lanmesh", Platform: "linux_mipsle", Budget: st.Size() + 1, Router: true}}, "", "all within budget"},
		{"over budget", []SizeTarget{{Name: "lanmesh", Platform: "linux_mipsle", Budget: st.Size() - 1, Router: true}}, "OVER BUDGET", "OVER BUDGET by"},
		{"not stripped", []SizeTarget{{Name: "lanmesh", Platform: "linux_arm", Router: true}}, "NOT STRIPPED", "NOT STRIPPED"},
		{"missing required", []SizeTarget{{Name: "lanmesh", Platform: "linux_arm64"}}, "make build", "ERROR"},
		{"missing optional", []SizeTarget{{Name: "lanmesh-derp", Platform: "linux_amd64", Optional: true}}, "", "not built (optional)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var md strings.Builder
			err := WriteSizeReport(&md, CurrentEnv(), MeasureSizes(bin, tt.targets))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error %v\n%s", err, md.String())
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.Contains(md.String(), tt.wantMD) {
				t.Fatalf("report lacks %q:\n%s", tt.wantMD, md.String())
			}
		})
	}
}
