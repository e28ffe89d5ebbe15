package tlscert

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	c, err := LoadOrCreate(dir, "lanmesh-coord", "198.18.0.10")
	if err != nil {
		t.Fatal(err)
	}
	x, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := x.VerifyHostname("198.18.0.10"); err != nil {
		t.Error(err)
	}
	if err := x.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if !slices.Contains(x.DNSNames, "localhost") {
		t.Error("no localhost SAN")
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	c2, err := LoadOrCreate(dir, "lanmesh-coord", "other.example")
	if err != nil || string(c2.Certificate[0]) != string(c.Certificate[0]) {
		t.Fatal("certificate not reused")
	}
}
