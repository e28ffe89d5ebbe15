package vmtest

import (
	"bytes"
	"io"
	"reflect"
	"testing"

	"github.com/cavaliergopher/cpio"
)

func TestParseModinfo(t *testing.T) {
	for _, tc := range []struct {
		info      string
		deps, pre []string
	}{
		{"license=GPL\x00depends=udp_tunnel,ip6_udp_tunnel,libchacha20poly1305\x00name=wireguard\x00", []string{"udp_tunnel", "ip6_udp_tunnel", "libchacha20poly1305"}, nil},
		{"depends=\x00softdep=pre: crc32c\x00", nil, []string{"crc32c"}},
		{"softdep=pre: a b post: c\x00", nil, []string{"a", "b"}},
		{"softdep=post: c\x00depends=x", []string{"x"}, nil},
		{"", nil, nil},
	} {
		deps, pre := parseModinfo([]byte(tc.info))
		if !reflect.DeepEqual(deps, tc.deps) || !reflect.DeepEqual(pre, tc.pre) {
			t.Errorf("parseModinfo(%q) = %q, %q; want %q, %q", tc.info, deps, pre, tc.deps, tc.pre)
		}
	}
}

func FuzzParseModinfo(f *testing.F) {
	f.Add([]byte("depends=a,b\x00softdep=pre: c post: d\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		deps, pre := parseModinfo(b)
		for _, d := range append(deps, pre...) {
			if d == "" {
				t.Fatalf("empty module name from %q", b)
			}
		}
		_, _, _ = modDepends(b) // never panics on junk
	})
}

func TestModName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/arch/x86/crypto/chacha-x86_64.ko": "chacha_x86_64",
		"kernel/net/ipv4/udp_tunnel.ko.xz":        "udp_tunnel",
		"chacha-mips":                             "chacha_mips",
	} {
		if got := modName(in); got != want {
			t.Errorf("modName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestInitramfs reads the archive back with the same cpio library: every
// parent directory comes before its files, modes and contents survive.
func TestInitramfs(t *testing.T) {
	var r Initramfs
	if err := r.Add("/usr/bin/lanmesh", 0o755, []byte("binary")); err != nil {
		t.Fatal(err)
	}
	if err := r.Add("/init", 0o755, []byte("#!/bin/sh\n")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "/", "relative", "/a/../b", "/a//b"} {
		if err := r.Add(bad, 0o644, nil); err == nil {
			t.Errorf("Add(%q) accepted", bad)
		}
	}
	var buf bytes.Buffer
	if _, err := r.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("070701")) {
		t.Fatalf("not a newc archive: %q", buf.Bytes()[:6])
	}
	rd := cpio.NewReader(&buf)
	var got []string
	seen := map[string]bool{}
	for {
		h, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name+" "+h.Mode.String())
		if h.Mode.IsRegular() {
			b, _ := io.ReadAll(rd)
			if h.Name == "usr/bin/lanmesh" && string(b) != "binary" {
				t.Errorf("content %q", b)
			}
		}
		for d := h.Name; ; {
			i := bytes.LastIndexByte([]byte(d), '/')
			if i < 0 {
				break
			}
			d = d[:i]
			if !seen[d] {
				t.Errorf("%s before its directory %s", h.Name, d)
			}
		}
		seen[h.Name] = true
	}
	want := []string{"usr 040755", "usr/bin 040755", "init 0100755", "usr/bin/lanmesh 0100755"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("archive = %q, want %q", got, want)
	}
}
