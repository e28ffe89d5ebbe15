package bench

import (
	"errors"
	"strings"
	"testing"
)

func TestWritePluginsReport(t *testing.T) {
	var b strings.Builder
	r := PluginsResult{Plugin: "lanmesh-idp-local", Start: Sample{200, 100, 300}, Restart: Sample{400}, RSS: Sample{16 << 20}}
	if err := WritePluginsReport(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| start (cold) | 200.0 ms | 100.0 ms | 300.0 ms | 3 |", "| restart after kill -9 | 400.0 ms |", "16.00 MiB"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "Failed") {
		t.Errorf("a run without error reported a failure")
	}
	b.Reset()
	r.Err, r.Attempts = errors.New("plugin not running after 30 s"), 2
	if err := WritePluginsReport(&b, r); err != nil || !strings.Contains(b.String(), "**Failed** after 2 run(s): plugin not running") {
		t.Errorf("failure not reported:\n%s", b.String())
	}
}
