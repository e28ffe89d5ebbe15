// Command lanmesh-packages builds lanmesh's OpenWrt .ipk packages from the
// cross builds in bin/ (make packages runs it; see firmware/openwrt/README.md).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/opkg"
)

func main() {
	fs := flag.NewFlagSet("lanmesh-packages", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: lanmesh-packages [--bin DIR] [--feed DIR] [--out DIR] [--version V] [--release N] [--only ARCH,...]

Builds OpenWrt 24.10 .ipk packages (lanmesh per architecture, lanmesh-coord
where it builds, luci-app-lanmesh) from the Go cross builds in --bin.

Examples:
  make build-cross && lanmesh-packages --bin bin --out bin/packages
  lanmesh-packages --only mipsel_24kc     # one router's package, no LuCI app

Flags:
`)
		fs.PrintDefaults()
	}
	o := opkg.Options{}
	fs.StringVar(&o.BinDir, "bin", "bin", "directory holding <os>_<arch>/lanmesh cross builds")
	fs.StringVar(&o.Feed, "feed", "firmware/openwrt", "the OpenWrt feed directory (init scripts, UCI defaults, LuCI app)")
	fs.StringVar(&o.OutDir, "out", "bin/packages", "where the .ipk files go")
	fs.StringVar(&o.Version, "version", "0.1.0", "upstream version")
	fs.StringVar(&o.Release, "release", "1", "package release")
	only := fs.String("only", "", "comma-separated OpenWrt architectures to build (mipsel_24kc, mips_24kc, arm_cortex-a7_neon-vfpv4, aarch64_cortex-a53, x86_64; \"all\" is luci-app-lanmesh); default: every package")
	epoch := fs.Int64("mtime", 0, "file time stamp, seconds since 1970 (default: $SOURCE_DATE_EPOCH or 0)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "lanmesh-packages: unexpected argument %q\n", fs.Arg(0))
		os.Exit(2)
	}
	if *epoch == 0 {
		if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok {
			fmt.Sscan(v, epoch)
		}
	}
	o.MTime = time.Unix(*epoch, 0).UTC()
	for _, a := range strings.Split(*only, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.Only = append(o.Only, a)
		}
	}
	paths, err := opkg.Build(o)
	for _, p := range paths {
		st, _ := os.Stat(p)
		if st != nil {
			fmt.Printf("%s\t%d bytes\n", p, st.Size())
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lanmesh-packages: %v\n", err)
		os.Exit(1)
	}
}
