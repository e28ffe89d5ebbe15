//go:build unix

package localapi

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// S5: the socket never exists at its public path with a mode wider than
// 0600, even with umask 0: it is made in a private 0700 directory and
// renamed into place, with no create-then-chmod window. The hook runs at
// the last moment before the rename and checks that nobody else could
// reach the socket yet.
func TestSocketCreatedPrivate(t *testing.T) {
	old := syscall.Umask(0) // the worst case: a socket would be created 0777
	defer syscall.Umask(old)
	sock := filepath.Join(t.TempDir(), "run", "lanmesh.sock")
	hooked := false
	listenHook = func(tmpSock, path string) {
		hooked = true
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("socket at %s before it is private: %v", path, err)
		}
		di, err := os.Stat(filepath.Dir(tmpSock))
		if err != nil || di.Mode().Perm() != 0o700 {
			t.Errorf("private dir mode = %v, %v; want 0700", di.Mode().Perm(), err)
		}
		if fi, err := os.Lstat(tmpSock); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode before the rename = %v, %v; want 0600", fi.Mode().Perm(), err)
		}
	}
	defer func() { listenHook = nil }()
	s, err := Listen(sock, &fakeBackend{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !hooked {
		t.Fatal("Listen did not go through listenPrivate")
	}
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket = %v, %v; want a 0600 socket", fi.Mode(), err)
	}
	// Nothing is left of the private directory.
	ents, _ := os.ReadDir(filepath.Dir(sock))
	if len(ents) != 1 {
		t.Fatalf("socket dir holds %d entries, want only the socket", len(ents))
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	c := NewClient(sock)
	if _, err := c.Status(t.Context()); err != nil {
		t.Fatalf("Status over the renamed socket: %v", err)
	}
	s.Close()
	<-done
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("Close left the socket behind: %v", err)
	}
}
