package bench

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
	"time"
)

const procStatus = "Name:\tlanmesh\nVmPeak:\t  812345 kB\nVmHWM:\t   14336 kB\nVmRSS:\t   12288 kB\nThreads:\t7\n"

func TestParseProcStatusKB(t *testing.T) {
	rss, hwm, err := parseRSS([]byte(procStatus))
	if err != nil || rss != 12288<<10 || hwm != 14336<<10 {
		t.Fatalf("parseRSS = %d, %d, %v; want 12 MiB, 14 MiB", rss, hwm, err)
	}
	for _, bad := range []string{"", "Name: x\n", "VmRSS: 12 MB\nVmHWM: 1 kB\n", "VmRSS: -1 kB\nVmHWM: 1 kB\n", "VmRSS: 1 kB\n"} {
		if _, _, err := parseRSS([]byte(bad)); err == nil {
			t.Errorf("parseRSS(%q) accepted", bad)
		}
	}
}

func FuzzParseProcStatusKB(f *testing.F) {
	f.Add([]byte(procStatus))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := ParseProcStatusKB(b, "VmRSS"); err == nil && v < 0 {
			t.Fatalf("negative size %d from %q", v, b)
		}
	})
}

func TestVMSectionSplice(t *testing.T) {
	host := []byte("# Throughput\n\nhost table\n")
	sec := []byte(vmSectionBegin + "\n## In VMs\nfirst\n" + vmSectionEnd + "\n")
	doc := SpliceVMSection(host, sec)
	if !bytes.HasPrefix(doc, host) || !bytes.HasSuffix(doc, sec) {
		t.Fatalf("appended:\n%s", doc)
	}
	if got := ExtractVMSection(doc); !bytes.Equal(got, sec) {
		t.Fatalf("extract = %q, want %q", got, sec)
	}
	// A new VM section replaces the old one in place; text after it stays.
	doc = append(doc, "trailer\n"...)
	sec2 := []byte(vmSectionBegin + "\nsecond\n" + vmSectionEnd + "\n")
	doc2 := SpliceVMSection(doc, sec2)
	if strings.Contains(string(doc2), "first") || !strings.Contains(string(doc2), "second") ||
		!bytes.HasPrefix(doc2, host) || !bytes.HasSuffix(doc2, []byte(vmSectionEnd+"\ntrailer\n")) {
		t.Fatalf("replaced:\n%s", doc2)
	}
	// A new host report keeps the old VM section (what -only throughput does).
	kept := SpliceVMSection([]byte("# Throughput\n\nnew host table\n"), ExtractVMSection(doc2))
	if !strings.Contains(string(kept), "new host table") || !strings.Contains(string(kept), "second") {
		t.Fatalf("kept:\n%s", kept)
	}
	if got := SpliceVMSection(host, nil); !bytes.Equal(got, host) {
		t.Fatalf("nil section changed the doc: %q", got)
	}
	if ExtractVMSection([]byte(vmSectionBegin+"\nno end\n")) != nil {
		t.Fatal("half a section extracted")
	}
}

func TestWriteVMSection(t *testing.T) {
	r := &VMResult{Env: Env{Date: time.Unix(0, 0).UTC()}, Reps: 2, Duration: 5 * time.Second, Setup: "setup",
		Runs: []VMRun{
			{Arch: "x86-64", Kernel: "linux-image-x", Planes: []VMPlane{
				{Name: PlaneKernel, BitsPS: Sample{300e6, 200e6}, IdleRSS: 10 << 20, LoadHWM: 12 << 20},
				{Name: PlaneUserspace, BitsPS: Sample{100e6, 100e6}, IdleRSS: 12 << 20, LoadHWM: 20 << 20},
			}},
			{Arch: "MIPS", Errs: []string{"boot failed"}},
		}}
	var b bytes.Buffer
	if err := WriteVMSection(&b, r); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{vmSectionBegin, vmSectionEnd, "TCG", "| x86-64 | lanmesh, kernel backend | 2.50x | 250.0 |", "| 2.50x |", "20.00 MiB", "FAILED", "MIPS: boot failed"} {
		if !strings.Contains(s, want) {
			t.Errorf("VM section lacks %q:\n%s", want, s)
		}
	}
	if ExtractVMSection(b.Bytes()) == nil {
		t.Error("written section cannot be extracted")
	}
}

func TestWriteRouterReport(t *testing.T) {
	r := &RouterResult{Reps: 1, Duration: time.Second, Setup: "setup", Run: VMRun{Arch: "MIPS", Planes: []VMPlane{
		{Name: PlaneRouterAgent, BitsPS: Sample{9e6}, IdleRSS: 15 << 20, LoadHWM: 25 << 20},
		{Name: PlaneRouterWGGo, BitsPS: Sample{10e6}, IdleRSS: 5 << 20},
	}}}
	var b bytes.Buffer
	if err := WriteRouterReport(&b, r); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{"TCG", "| 0.90x |", "| agent RSS idle (VmRSS, joined) | <= 16.00 MiB | 15.00 MiB | yes |",
		"| agent RSS under load (VmHWM during transfers) | <= 24.00 MiB | 25.00 MiB | NO |"} {
		if !strings.Contains(s, want) {
			t.Errorf("router.md lacks %q:\n%s", want, s)
		}
	}
}

func tgz(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for n, d := range files {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o755, Size: int64(len(d)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(d)
	}
	tw.Close()
	zw.Close()
	return b.Bytes()
}

func TestIPKFiles(t *testing.T) {
	data := tgz(t, map[string][]byte{"./usr/sbin/lanmesh": []byte("ELF"), "./etc/config/lanmesh": []byte("config agent 'main'\n")})
	ipk := tgz(t, map[string][]byte{"./debian-binary": []byte("2.0\n"), "./control.tar.gz": tgz(t, nil), "./data.tar.gz": data})
	got, err := IPKFiles(ipk, "/usr/sbin/lanmesh", "/etc/config/lanmesh")
	if err != nil || string(got["/usr/sbin/lanmesh"]) != "ELF" || !strings.HasPrefix(string(got["/etc/config/lanmesh"]), "config") {
		t.Fatalf("IPKFiles = %q, %v", got, err)
	}
	if _, err := IPKFiles(ipk, "/usr/bin/missing"); err == nil || !strings.Contains(err.Error(), "/usr/bin/missing") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := IPKFiles([]byte("not a package"), "/x"); err == nil {
		t.Error("junk accepted")
	}
	if _, err := IPKFiles(tgz(t, map[string][]byte{"./debian-binary": []byte("2.0\n")}), "/x"); err == nil || !strings.Contains(err.Error(), "data.tar.gz") {
		t.Errorf("no data.tar.gz: %v", err)
	}
}

func FuzzIPKFiles(f *testing.F) {
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = IPKFiles(b, "/usr/sbin/lanmesh") // never panics
	})
}
