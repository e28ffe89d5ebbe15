package bad

import (
	"os"
	"testing"
)

func TestRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root") // want `raw t.Skip`
	}
}

func TestTool(t *testing.T) {
	t.Skipf("no %s", "iperf3") // want `raw t.Skipf`
}

func BenchmarkX(b *testing.B) {
	b.SkipNow() // want `raw b.SkipNow`
}

func helper(tb testing.TB) {
	tb.Skip("x") // want `raw tb.Skip`
}

func viaInterface(t interface{ Skip(...any) }) {
	t.Skip("x") // want `raw t.Skip`
}

type notATest struct{}

func (notATest) Skip(string) {}

func unrelated() {
	notATest{}.Skip("fine: not a test's Skip")
}
