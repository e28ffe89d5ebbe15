// Command lanmesh-vet runs lanmesh's own checks (internal/lint) as a go vet
// tool:
//
//	go build -o bin/lanmesh-vet ./cmd/lanmesh-vet
//	go vet -vettool=bin/lanmesh-vet ./...
//
// `make lint` and the vet phase of `make test` do exactly that. It reports
// secrets compared in non-constant time (secretcmp, S8) and tests that skip
// without internal/testenv (rawskip).
package main

import (
	"github.com/lanmesh/lanmesh/internal/lint/rawskip"
	"github.com/lanmesh/lanmesh/internal/lint/secretcmp"
	"golang.org/x/tools/go/analysis/unitchecker"
)

func main() { unitchecker.Main(secretcmp.Analyzer, rawskip.Analyzer) }
