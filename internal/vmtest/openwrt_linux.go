package vmtest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/agent/config/uci"
	"github.com/lanmesh/lanmesh/internal/opkg"
	"github.com/lanmesh/lanmesh/internal/testbed"
)

// openwrtArch names the OpenWrt package architecture of a guest and the
// bin/<os>_<arch> directory opkg.Build reads its binary from.
var openwrtArch = map[Arch]opkg.Arch{
	MIPSLE: {Name: "mipsel_24kc", BinDir: "linux_mipsle"},
	AMD64:  {Name: "x86_64", BinDir: "linux_amd64"},
}

var (
	ipkMu    sync.Mutex
	ipkBuilt = map[Arch]string{}
)

// OpenWrtPackage returns the lanmesh .ipk for arch and its contents: the
// guest binary of RouterBinary packaged by internal/opkg with the feed's
// files (firmware/openwrt), exactly as `make packages` builds it. It is
// built once per process into the temp dir.
func OpenWrtPackage(ctx context.Context, arch Arch) (string, *opkg.Package, error) {
	oa, ok := openwrtArch[arch]
	if !ok {
		return "", nil, fmt.Errorf("vmtest: no OpenWrt package architecture for %s", arch)
	}
	bin, err := RouterBinary(ctx, arch)
	if err != nil {
		return "", nil, err
	}
	ipkMu.Lock()
	defer ipkMu.Unlock()
	if p, ok := ipkBuilt[arch]; ok {
		pkg, err := opkg.Read(p)
		return p, pkg, err
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", nil, err
	}
	sweepBinDirs()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("lanmesh-vmtest-bin-%d", os.Getpid()), "ipk-"+oa.Name)
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(filepath.Join(binDir, oa.BinDir), 0o755); err != nil {
		return "", nil, fmt.Errorf("vmtest: %w", err)
	}
	// A copy, not a symlink: nfpm would package a symlink as one.
	b, err := os.ReadFile(bin)
	if err != nil {
		return "", nil, fmt.Errorf("vmtest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(binDir, oa.BinDir, "lanmesh"), b, 0o755); err != nil {
		return "", nil, fmt.Errorf("vmtest: %w", err)
	}
	paths, err := opkg.Build(opkg.Options{
		Feed: filepath.Join(root, "firmware", "openwrt"), BinDir: binDir, OutDir: filepath.Join(dir, "packages"),
		Version: "0.0.0", Release: "1", MTime: time.Unix(0, 0), Only: []string{oa.Name},
	})
	if err != nil {
		return "", nil, fmt.Errorf("vmtest: package lanmesh for %s: %w", oa.Name, err)
	}
	var ipk string
	for _, p := range paths {
		if strings.HasPrefix(filepath.Base(p), "lanmesh_") {
			ipk = p
		}
	}
	if ipk == "" {
		return "", nil, fmt.Errorf("vmtest: opkg.Build made no lanmesh package for %s (got %v)", oa.Name, paths)
	}
	pkg, err := opkg.Read(ipk)
	if err != nil {
		return "", nil, err
	}
	ipkBuilt[arch] = ipk
	return ipk, pkg, nil
}

// moduleRoot is the lanmesh module's directory (the tests run inside it).
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("vmtest: not inside the lanmesh module: the OpenWrt package is built from firmware/openwrt")
	}
	return filepath.Dir(mod), nil
}

// OpenWrtOptions describe a router VM that runs the packaged agent the
// way OpenWrt does: the files of the lanmesh .ipk at their paths, an
// OpenWrt /etc/config/network with "wan" on eth0 and "lan" on eth1, and
// the package's /etc/config/lanmesh with only the options in UCI changed.
type OpenWrtOptions struct {
	Name string // VM name (logs: <name>.console.log)
	Arch Arch   // MIPSLE: the router's CPU
	// Host runs QEMU and holds both taps: WANTap becomes eth0 ("wan"),
	// LANTap eth1 ("lan"), e.g. taps on testbed segments' bridges.
	Host           *testbed.Host
	WANTap, LANTap string
	// WAN and LAN are the router's addresses with prefix length
	// ("198.18.3.2/17", "198.19.3.1/24"); Gateway is the WAN's default
	// route. They go into /etc/config/network as static interfaces.
	WAN, Gateway, LAN string
	// UCI sets options of the shipped /etc/config/lanmesh by
	// "section.option" (section names as shipped: main, join, dns, web),
	// e.g. "join.login_server": coord's URL. Everything else stays as the
	// package ships it.
	UCI map[string]string
	// AuthKey, when set, is written 0600 to the shipped
	// join.auth_key_file (/etc/lanmesh/authkey), never to a command line.
	AuthKey string
	// Modules are loaded at boot; nil: OpenWrtModules (what the
	// package's Depends bring on OpenWrt).
	Modules []string
	Files   map[string]File // more guest files (e.g. tools for a bench)
	MemMiB  int             // default per Arch (mipsle: 128)
	// BootTimeout: see Options (0: 4 minutes).
	BootTimeout time.Duration
}

// OpenWrtModules are the kernel modules the lanmesh package's Depends
// give an OpenWrt router (kmod-tun, kmod-nft-core, kmod-nft-nat), as
// Debian's modular kernel names them. No wireguard: the package does not
// depend on kmod-wireguard, so backend auto picks userspace.
var OpenWrtModules = []string{"tun", "nf_tables", "nft_ct", "nft_chain_nat", "nft_masq"}

// OpenWrt is a booted router VM with the lanmesh package installed.
type OpenWrt struct {
	*VM
	IPK     string        // the package installed
	Package *opkg.Package // its contents
	UCI     string        // /etc/config/lanmesh as written into the guest
	Network string        // /etc/config/network as written
	// Command is the agent's command line as the package's procd init
	// script gives it (procd_set_param command), $PROG expanded.
	Command []string
}

// UCIPath and LogPath are where the agent's config and its output
// (procd's stdout/stderr) are in the guest.
const (
	UCIPath = "/etc/config/lanmesh"
	LogPath = "/tmp/lanmesh.log"
)

// BootOpenWrt builds the package (OpenWrtPackage), installs its files and
// the UCI files into the guest's root and boots it with the network
// configured as /etc/config/network says (netifd's job on a router, done
// here with ip), forwarding on. The agent is not started: StartAgent.
func BootOpenWrt(ctx context.Context, opt OpenWrtOptions) (*OpenWrt, error) {
	if opt.WANTap == "" || opt.LANTap == "" {
		return nil, fmt.Errorf("vmtest: OpenWrtOptions needs WANTap and LANTap (the router's wan and lan ports)")
	}
	wan, err := netip.ParsePrefix(opt.WAN)
	if err != nil {
		return nil, fmt.Errorf("vmtest: OpenWrtOptions.WAN %q: want an address with prefix length like 198.18.3.2/17", opt.WAN)
	}
	lan, err := netip.ParsePrefix(opt.LAN)
	if err != nil {
		return nil, fmt.Errorf("vmtest: OpenWrtOptions.LAN %q: want an address with prefix length like 198.19.3.1/24", opt.LAN)
	}
	gw, err := netip.ParseAddr(opt.Gateway)
	if err != nil {
		return nil, fmt.Errorf("vmtest: OpenWrtOptions.Gateway %q: want an IPv4 address", opt.Gateway)
	}
	ipk, pkg, err := OpenWrtPackage(ctx, opt.Arch)
	if err != nil {
		return nil, err
	}
	r := &OpenWrt{IPK: ipk, Package: pkg}
	if r.Command, err = procdCommand(pkg); err != nil {
		return nil, err
	}
	shipped, ok := pkg.Files[UCIPath]
	if !ok {
		return nil, fmt.Errorf("vmtest: %s has no %s", filepath.Base(ipk), UCIPath)
	}
	if r.UCI, err = setUCI(shipped.Data, opt.UCI); err != nil {
		return nil, err
	}
	r.Network = networkUCI(wan, gw, lan)

	files := map[string]File{}
	for name, f := range pkg.Files {
		files[name] = File{Data: f.Data, Mode: f.Mode}
	}
	files[UCIPath] = File{Data: []byte(r.UCI), Mode: shipped.Mode}
	files["/etc/config/network"] = File{Data: []byte(r.Network), Mode: 0o644}
	if opt.AuthKey != "" {
		f, err := uci.Parse(UCIPath, []byte(r.UCI))
		if err != nil {
			return nil, err
		}
		path := ""
		if s := f.Section("join"); s != nil {
			path = s.Options["auth_key_file"]
		}
		if path == "" {
			return nil, fmt.Errorf("vmtest: AuthKey given but %s has no join.auth_key_file", UCIPath)
		}
		files[path] = File{Data: []byte(opt.AuthKey + "\n"), Mode: 0o600}
	}
	for name, f := range opt.Files {
		files[name] = f
	}
	mods := opt.Modules
	if mods == nil {
		mods = OpenWrtModules
	}
	vm, err := Boot(ctx, Options{Name: opt.Name, Arch: opt.Arch, Host: opt.Host, Tap: opt.WANTap, MoreTaps: []string{opt.LANTap},
		Modules: mods, Files: files, MemMiB: opt.MemMiB, BootTimeout: opt.BootTimeout})
	if err != nil {
		return nil, err
	}
	r.VM = vm
	// What netifd and OpenWrt's sysctl defaults would do, from the same
	// values as /etc/config/network; the guest clock from the host's, as
	// sysntpd would (TLS to coord checks certificate dates).
	setup := fmt.Sprintf(`set -e
date -u -s @%d >/dev/null
ip link set eth0 up && ip addr add %s dev eth0
ip link set eth1 up && ip addr add %s dev eth1
ip route add default via %s
echo 1 >/proc/sys/net/ipv4/ip_forward
mkdir -p /var/run /tmp
`, time.Now().Unix(), wan, lan, gw)
	if _, err := vm.Run(ctx, setup); err != nil {
		vm.Close()
		return nil, err
	}
	return r, nil
}

var procdCommandRe = regexp.MustCompile(`(?m)^\s*procd_set_param command "\$PROG" (.+)$`)
var progRe = regexp.MustCompile(`(?m)^PROG=(\S+)$`)

// procdCommand is the agent's command line from the package's init
// script, so the VM runs what procd would.
func procdCommand(pkg *opkg.Package) ([]string, error) {
	init, ok := pkg.Files["/etc/init.d/lanmesh"]
	if !ok {
		return nil, fmt.Errorf("vmtest: the package has no /etc/init.d/lanmesh")
	}
	m, p := procdCommandRe.FindSubmatch(init.Data), progRe.FindSubmatch(init.Data)
	if m == nil || p == nil {
		return nil, fmt.Errorf("vmtest: /etc/init.d/lanmesh: no PROG= and procd_set_param command \"$PROG\" ... lines")
	}
	return append([]string{string(p[1])}, strings.Fields(string(m[1]))...), nil
}

// setUCI applies sets ("section.option" -> value) to a UCI file's text
// with the agent's own UCI writer (comments and other lines kept).
func setUCI(text []byte, sets map[string]string) (string, error) {
	dir, err := os.MkdirTemp("", "lmvm-uci-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "lanmesh")
	if err := os.WriteFile(p, text, 0o600); err != nil {
		return "", err
	}
	keys := make([]string, 0, len(sets))
	for k := range sets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sec, opt, ok := strings.Cut(k, ".")
		if !ok {
			return "", fmt.Errorf("vmtest: UCI key %q: want section.option, e.g. join.login_server", k)
		}
		if err := uci.Set(p, sec, opt, []string{sets[k]}, false); err != nil {
			return "", fmt.Errorf("vmtest: %w", err)
		}
	}
	b, err := os.ReadFile(p)
	return string(b), err
}

// networkUCI is an OpenWrt /etc/config/network with a static wan on eth0
// and a static lan on eth1 (netmask form, as OpenWrt's defaults write it).
func networkUCI(wan netip.Prefix, gw netip.Addr, lan netip.Prefix) string {
	mask := func(p netip.Prefix) string {
		m := uint32(0xffffffff) << (32 - p.Bits())
		return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
	}
	return fmt.Sprintf(`config interface 'loopback'
	option device 'lo'
	option proto 'static'
	option ipaddr '127.0.0.1'
	option netmask '255.0.0.0'

config interface 'lan'
	option device 'eth1'
	option proto 'static'
	option ipaddr '%s'
	option netmask '%s'

config interface 'wan'
	option device 'eth0'
	option proto 'static'
	option ipaddr '%s'
	option netmask '%s'
	option gateway '%s'
`, lan.Addr(), mask(lan), wan.Addr(), mask(wan), gw)
}

// StartAgent starts the agent with the init script's command line in its
// own session (procd's part: stdout and stderr to LogPath) and waits
// until its local API answers.
func (r *OpenWrt) StartAgent(ctx context.Context) error {
	var q []string
	for _, a := range r.Command {
		q = append(q, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	if _, err := r.Run(ctx, "setsid "+strings.Join(q, " ")+" </dev/null >"+LogPath+" 2>&1 &"); err != nil {
		return err
	}
	_, err := r.WaitStatus(ctx, 2*time.Minute, "the local API", func(*testbed.Status) bool { return true })
	return err
}

// Status runs `lanmesh status --json` in the guest (the CLI's default
// socket is the shipped one).
func (r *OpenWrt) Status(ctx context.Context) (*testbed.Status, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, rc, err := r.Exec(cctx, r.Command[0]+" status --json")
	if err != nil {
		return nil, err
	}
	if rc != 0 {
		return nil, fmt.Errorf("vmtest: %s: lanmesh status --json exited %d: %s", r.Name, rc, strings.TrimSpace(out))
	}
	return testbed.ParseStatus([]byte(out))
}

// WaitStatus polls the agent's status until ok accepts it or within
// passes (TCG is slow: give minutes). The error carries the last status
// or error and the agent's log.
func (r *OpenWrt) WaitStatus(ctx context.Context, within time.Duration, what string, ok func(*testbed.Status) bool) (*testbed.Status, error) {
	deadline := time.Now().Add(within)
	var last string
	for {
		st, err := r.Status(ctx)
		if err == nil && ok(st) {
			return st, nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("backend_state %s, coord connected %v (%s), self %s, %d peers", st.BackendState, st.Coord.Connected, st.Coord.LastError, st.Self.Summary(), len(st.Peers))
		}
		if time.Now().After(deadline) || ctx.Err() != nil || r.Exited() {
			return nil, fmt.Errorf("vmtest: %s: no %s within %v; last: %s\nagent log:\n%s", r.Name, what, within, last, r.AgentLog(context.Background()))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// AgentLog is the tail of the agent's output (procd's log on a router).
func (r *OpenWrt) AgentLog(ctx context.Context) string {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, _, err := r.Exec(cctx, "tail -n 60 "+LogPath)
	if err != nil {
		return err.Error()
	}
	return out
}

// AgentRSS is the agent's resident set size in bytes (VmRSS).
func (r *OpenWrt) AgentRSS(ctx context.Context) (int64, error) {
	out, err := r.Run(ctx, "grep VmRSS /proc/$(pidof "+filepath.Base(r.Command[0])+")/status")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(out)
	if len(f) < 3 || f[2] != "kB" {
		return 0, fmt.Errorf("vmtest: VmRSS line %q", strings.TrimSpace(out))
	}
	kb, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("vmtest: VmRSS line %q: %w", strings.TrimSpace(out), err)
	}
	return kb << 10, nil
}
