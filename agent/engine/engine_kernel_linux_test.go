package engine

import (
	"bytes"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
)

// TestBackendChoice: userspace is taken when asked for; auto takes the
// kernel when it can make a wireguard link and otherwise falls back with
// the reason in Backend(); kernel without the module is an error that says
// so; an unknown backend is refused. Without the module (this machine's
// own kernel has none) the fallback logs a warning that says so. (The
// kernel path itself runs in the VM: internal/vmtest/e2e TestKernelMesh.)
func TestBackendChoice(t *testing.T) {
	requireRoot(t)
	probe := newNS(t)
	hasWG := exec.Command("ip", "-n", probe, "link", "add", "wgprobe", "type", "wireguard").Run() == nil

	var logs bytes.Buffer
	start := func(backend string) (Engine, error) {
		ns := newNS(t)
		var e Engine
		var err error
		logs.Reset()
		log := slog.New(slog.NewTextHandler(&logs, nil))
		if nerr := inNS(ns, func() { e, err = New(Options{Backend: backend}, log) }); nerr != nil {
			t.Fatal(nerr)
		}
		if err == nil {
			t.Cleanup(func() { e.Close() })
		}
		return e, err
	}
	backend := func(e Engine) (string, string) { return e.(BackendReporter).Backend() }

	e, err := start(BackendUserspace)
	if err != nil {
		t.Fatal(err)
	}
	if b, why := backend(e); b != BackendUserspace || why != "backend: userspace in config" {
		t.Errorf("userspace: backend %q (%s)", b, why)
	}

	e, err = start(BackendAuto)
	if err != nil {
		t.Fatal(err)
	}
	b, why := backend(e)
	switch {
	case hasWG && (b != BackendKernel || why != "auto: the kernel has WireGuard"):
		t.Errorf("auto with kernel WireGuard: backend %q (%s)", b, why)
	case !hasWG && (b != BackendUserspace || !strings.HasPrefix(why, "auto: kernel WireGuard unavailable: ")):
		t.Errorf("auto without kernel WireGuard: backend %q (%s)", b, why)
	}
	t.Logf("auto: %s (%s)", b, why)
	const fallback = `level=WARN msg="kernel WireGuard unavailable, falling back to userspace WireGuard (wireguard-go)"`
	if !hasWG && (!strings.Contains(logs.String(), fallback) || !strings.Contains(logs.String(), `err="the kernel has no WireGuard`)) {
		t.Errorf("auto without kernel WireGuard: no %q in the log:\n%s", fallback, logs.String())
	}

	_, err = start(BackendKernel)
	if hasWG && err != nil {
		t.Errorf("kernel: %v", err)
	}
	if !hasWG && (err == nil || !strings.Contains(err.Error(), "kernel WireGuard backend (backend: kernel in config)")) {
		t.Errorf("kernel without the module: err = %v", err)
	}

	if _, err := start("wireguard-go"); err == nil || !strings.Contains(err.Error(), "want auto, kernel or userspace") {
		t.Errorf("unknown backend: err = %v", err)
	}
}
