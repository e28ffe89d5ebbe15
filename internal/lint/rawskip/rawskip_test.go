package rawskip_test

import (
	"testing"

	"github.com/lanmesh/lanmesh/internal/lint/rawskip"
	"golang.org/x/tools/go/analysis/analysistest"
)

// TestKnownBad: every raw skip in testdata/src/bad is reported, so a test
// that skips silently under CI=true cannot slip in.
func TestKnownBad(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), rawskip.Analyzer, "bad")
}
