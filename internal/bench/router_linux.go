package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/testbed"
	"github.com/lanmesh/lanmesh/internal/vmtest"
)

// Addresses of the stock wireguard-go tunnel between the guest and
// router A (router A runs no lanmesh here, so nothing else is there).
const (
	wgGoHostIP  = "100.127.254.1"
	wgGoGuestIP = "100.127.254.2"
	wgGoPort    = 51820
)

// The packaged agent's files the benchmark takes from the .ipk.
const (
	ipkBinary = "/usr/sbin/lanmesh"
	ipkConfig = "/etc/config/lanmesh"
	ipkInit   = "/etc/init.d/lanmesh"
)

// findIPK returns the one mipsel_24kc lanmesh package under binDir/packages.
func findIPK(binDir string) (string, error) {
	ms, _ := filepath.Glob(filepath.Join(binDir, "packages", "lanmesh_*_mipsel_24kc.ipk"))
	switch len(ms) {
	case 1:
		return ms[0], nil
	case 0:
		return "", fmt.Errorf("no lanmesh_*_mipsel_24kc.ipk in %s (run make packages)", filepath.Join(binDir, "packages"))
	}
	return "", fmt.Errorf("%d lanmesh mipsel_24kc packages in %s: keep one (make clean packages)", len(ms), filepath.Join(binDir, "packages"))
}

var procdCommandRe = regexp.MustCompile(`(?m)^\s*procd_set_param command "\$PROG" (.+)$`)

// initCommand returns the agent's arguments from the package's procd
// init script ("procd_set_param command "$PROG" agent --uci ..."), so
// the guest runs the agent exactly as the router's procd would.
func initCommand(script []byte) (string, error) {
	m := procdCommandRe.FindSubmatch(script)
	if m == nil {
		return "", errors.New(`init script: no procd_set_param command "$PROG" line`)
	}
	args := strings.TrimSpace(string(m[1]))
	if strings.ContainsAny(args, "'\"$`;&|") {
		return "", fmt.Errorf("init script: command arguments %q: want plain words", args)
	}
	return args, nil
}

// setUCIOption replaces option name's value in a UCI file's text.
func setUCIOption(text, name, value string) (string, error) {
	re := regexp.MustCompile(`(?m)^(\s*option ` + regexp.QuoteMeta(name) + ` )'[^']*'`)
	if !re.MatchString(text) {
		return "", fmt.Errorf("packaged /etc/config/lanmesh has no option %s", name)
	}
	return re.ReplaceAllString(text, "${1}'"+value+"'"), nil
}

// routerNetwork is the guest's /etc/config/network: "lan" is what the
// packaged config advertises.
const routerNetwork = `
config interface 'loopback'
	option device 'lo'
	option proto 'static'
	option ipaddr '127.0.0.1'
	option netmask '255.0.0.0'

config interface 'lan'
	option device 'br-lan'
	option proto 'static'
	option ipaddr '198.19.120.1'
	option netmask '255.255.255.0'

config interface 'wan'
	option device 'eth0'
	option proto 'dhcp'
`

// buildWireGoFor cross-builds stock wireguard-go at the version go.mod
// requires for goos/goarch (plus env such as GOMIPS=softfloat) into dir.
// go install builds outside this module, so the project's go.mod never
// changes; cross-built, it installs into GOPATH/bin/<goos>_<goarch>, so
// GOPATH is a scratch dir (the module cache stays shared).
func buildWireGoFor(ctx context.Context, dir, goos, goarch string, env ...string) (bin, version string, err error) {
	version, err = wireGoVersion(ctx)
	if err != nil {
		return "", "", err
	}
	modcache, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	gopath := filepath.Join(dir, "gopath")
	cmd := exec.CommandContext(ctx, "go", "install", wireGoModule+"@"+version)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOPATH="+gopath, "GOMODCACHE="+strings.TrimSpace(string(modcache)),
		"GOBIN=", "CGO_ENABLED=0", "GOFLAGS=", "GOOS="+goos, "GOARCH="+goarch)
	cmd.Env = append(cmd.Env, env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go install %s@%s for %s/%s: %w\n%s", wireGoModule, version, goos, goarch, err, b)
	}
	for _, p := range []string{filepath.Join(gopath, "bin", goos+"_"+goarch, "wireguard"), filepath.Join(gopath, "bin", "wireguard")} {
		if _, err := os.Stat(p); err == nil {
			return p, version, nil
		}
	}
	return "", "", fmt.Errorf("go install %s for %s/%s left no binary under %s", wireGoModule, goos, goarch, gopath)
}

// RunRouter boots the MIPS Malta guest (128 MiB, TCG) with the lanmesh
// agent taken out of the mipsel_24kc .ipk and configured only from the
// package's UCI file, joined to coord; stock wireguard-go, cross-built
// for the same guest, runs beside it to router A. Transfers of the two
// alternate, and the agent's memory is read idle and under load.
func RunRouter(ctx context.Context, opt VMOptions) (*RouterResult, error) {
	if err := opt.check("router"); err != nil {
		return nil, err
	}
	log := opt.Log
	ipkPath, err := findIPK(opt.BinDir)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	ipk, err := os.ReadFile(ipkPath)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	pkg, err := IPKFiles(ipk, ipkBinary, ipkConfig, ipkInit)
	if err != nil {
		return nil, fmt.Errorf("router: %s: %w", filepath.Base(ipkPath), err)
	}
	agentArgs, err := initCommand(pkg[ipkInit])
	if err != nil {
		return nil, fmt.Errorf("router: %s: %w", filepath.Base(ipkPath), err)
	}
	res := &RouterResult{Env: CurrentEnv(), Reps: opt.Reps, Duration: opt.Duration,
		Package: fmt.Sprintf("%s (%d bytes; %s %d bytes)", filepath.Base(ipkPath), len(ipk), ipkBinary, len(pkg[ipkBinary]))}
	res.Run.Arch = archTitle(vmtest.MIPSLE)
	if err := vmtest.CanBoot(vmtest.MIPSLE); err != nil {
		res.Run.Errs = append(res.Run.Errs, err.Error())
		return res, nil
	}
	rig, err := newVMRig(ctx, log)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	defer rig.close()
	res.Setup = fmt.Sprintf("Guest: QEMU `-M malta -m 128` under TCG, Debian's own 4kc-malta kernel, a busybox initramfs. "+
		"The agent is `%s` taken out of %s, started as the package's procd init script starts it (`lanmesh %s`), "+
		"configured only from UCI: the package's own /etc/config/lanmesh with login_server, hostname and the dnsmasq hooks "+
		"set for the testbed and `option backend 'userspace'` added (the package's default is auto; the router runs the "+
		"userspace data plane here, the kernel one is compared in throughput.md), and an /etc/config/network with a static `lan`. "+
		"It joins coord from the UCI join block with an auth key file. The guest is behind an easy-NAT box of the namespace "+
		"testbed; the far ends run natively on the host (so the guest is the bottleneck): router-b, a userspace lanmesh agent, "+
		"for lanmesh, and router A for stock wireguard-go (%s cross-built for linux/mipsle softfloat, configured with Debian's "+
		"mipsel `wg`, default settings). A transfer is busybox `nc` in the guest sending /dev/zero through the tunnel to a TCP "+
		"sink on the far end's tunnel address, timed at the receiver. Memory: /proc/PID/status in the guest; idle = joined, "+
		"tunnel up, %s later, before any transfer; during transfer = VmRSS sampled halfway, VmHWM reset before each transfer "+
		"(clear_refs) and read after it, max over transfers. The no-tunnel row is one such transfer to router-b's WAN "+
		"address outside any tunnel, run after the tunnels' transfers: the guest's own ceiling under TCG.",
		ipkBinary, res.Package, agentArgs, wireGoModule, idleSettle)
	run := rig.routerRun(ctx, opt, pkg, agentArgs)
	if len(run.Failed()) > 0 {
		rig.w.KeepLogs()
		log.Warn("bench: router: logs kept", "dir", rig.w.LogDir)
	}
	res.Run = run
	return res, nil
}

func (r *vmRig) routerRun(ctx context.Context, opt VMOptions, pkg map[string][]byte, agentArgs string) VMRun {
	log := opt.Log
	run := VMRun{Arch: archTitle(vmtest.MIPSLE), Machine: vmMachine(vmtest.MIPSLE)}
	fail := func(err error) VMRun {
		log.Error("bench: router: setup failed", "err", err)
		run.Errs = append(run.Errs, err.Error())
		return run
	}
	dir, err := r.w.StateDir("wireguard-go")
	if err != nil {
		return fail(err)
	}
	guestWG, version, err := buildWireGoFor(ctx, dir, "linux", "mipsle", "GOMIPS=softfloat")
	if err != nil {
		return fail(err)
	}
	hostWG, _, err := buildWireGo(ctx, dir)
	if err != nil {
		return fail(err)
	}
	log.Info("bench: router: built stock wireguard-go", "version", version)
	guestWGBin, err := os.ReadFile(guestWG)
	if err != nil {
		return fail(err)
	}
	files, err := vmtest.DebianTool(ctx, vmtest.MIPSLE, "wireguard-tools", "/usr/bin/wg", "libc6")
	if err != nil {
		return fail(err)
	}
	authKey, err := r.coord.CreateKey(ctx)
	if err != nil {
		return fail(err)
	}
	uci := string(pkg[ipkConfig])
	for _, o := range [][2]string{
		{"login_server", r.coord.URL},
		{"hostname", "vm-router"},
		{"dnsmasq_conf", "/tmp/dnsmasq.d/lanmesh.conf"},
		// No dnsmasq in the guest: the hook only has to succeed.
		{"dnsmasq_reload", "true"},
	} {
		if uci, err = setUCIOption(uci, o[0], o[1]); err != nil {
			return fail(err)
		}
	}
	uci += "\nconfig agent 'main'\n\toption backend 'userspace'\n"
	guestKey, hostKey := key.NewNode(), key.NewNode()
	files[ipkBinary] = vmtest.File{Data: pkg[ipkBinary], Mode: 0o755}
	files[ipkConfig] = vmtest.File{Data: []byte(uci), Mode: 0o600}
	files["/etc/config/network"] = vmtest.File{Data: []byte(routerNetwork)}
	files["/etc/lanmesh/authkey"] = vmtest.File{Data: []byte(authKey + "\n"), Mode: 0o600}
	files["/usr/bin/wireguard-go"] = vmtest.File{Data: guestWGBin, Mode: 0o755}
	files["/etc/wggo/key"] = vmtest.File{Data: []byte(guestKey.Base64() + "\n"), Mode: 0o600}

	site, err := r.addSite("nat-router", 9)
	if err != nil {
		return fail(err)
	}
	log.Info("bench: router: booting the MIPS guest")
	vm, err := vmtest.Boot(ctx, vmtest.Options{Name: "vm-router", Arch: vmtest.MIPSLE, Host: site.nat, Tap: site.tap,
		Modules: vmModules, Files: files})
	if err != nil {
		return fail(err)
	}
	defer vm.Close()
	run.Kernel, run.Boot = vm.Kernel.Package, vm.BootTime
	log.Info("bench: router: booted", "kernel", vm.Kernel.Package, "boot", vm.BootTime.Round(time.Millisecond))
	if err := site.netUp(ctx, vm); err != nil {
		return fail(err)
	}

	// The agent, as procd starts it.
	agent, err := startGuest(ctx, vm, "lanmesh", ipkBinary+" "+agentArgs)
	if err != nil {
		return fail(err)
	}
	sock := "/var/run/lanmesh/lanmesh.sock"
	st, err := waitGuestStatus(ctx, vm, ipkBinary, sock, "join from UCI with router-b in the netmap", 3*time.Minute, func(s *testbed.Status) bool {
		return s.BackendState == "Running" && s.Peer("router-b") != nil && s.Peer("router-b").IPv4() != ""
	})
	if err != nil {
		return fail(fmt.Errorf("%w; agent log:\n%s", err, agent.logTail(ctx)))
	}
	if st.WireGuard.Backend != "userspace" {
		return fail(fmt.Errorf("agent runs the %q backend (%s), want userspace from UCI", st.WireGuard.Backend, st.WireGuard.Reason))
	}
	meshDst := st.Peer("router-b").IPv4()
	if err := guestPing(ctx, vm, meshDst, 30); err != nil {
		return fail(fmt.Errorf("%w; agent log:\n%s", err, agent.logTail(ctx)))
	}
	log.Info("bench: router: agent joined from UCI", "self", st.Self.Name, "router-b", meshDst)

	// Stock wireguard-go: router A natively, the guest cross-built.
	hostIf := fmt.Sprintf("wgr%d", os.Getpid()%100000)
	hostProc, err := r.s.RouterA.Start("wireguard-go-a", hostWG, "-f", hostIf)
	if err != nil {
		return fail(err)
	}
	defer hostProc.Stop(2 * time.Second)
	if err := waitFor(ctx, 10*time.Second, func() error {
		if !hostProc.Running() {
			return fmt.Errorf("wireguard-go exited: %v", hostProc.Err())
		}
		_, err := os.Stat("/var/run/wireguard/" + hostIf + ".sock")
		return err
	}); err != nil {
		return fail(fmt.Errorf("router A wireguard-go: %w", err))
	}
	keyFile := filepath.Join(dir, "host.key")
	if err := os.WriteFile(keyFile, []byte(hostKey.Base64()+"\n"), 0o600); err != nil {
		return fail(err)
	}
	for _, args := range [][]string{
		{"wg", "set", hostIf, "listen-port", fmt.Sprint(wgGoPort), "private-key", keyFile, "peer", guestKey.Public().String(), "allowed-ips", wgGoGuestIP + "/32"},
		{"ip", "addr", "add", wgGoHostIP + "/24", "dev", hostIf},
		{"ip", "link", "set", hostIf, "up"},
	} {
		if _, err := r.s.RouterA.Run(ctx, args...); err != nil {
			return fail(fmt.Errorf("router A: %w", err))
		}
	}
	wggo, err := startGuest(ctx, vm, "wireguard-go", "wireguard-go -f wg0")
	if err != nil {
		return fail(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := vm.Run(wctx, fmt.Sprintf("i=0; until [ -S /var/run/wireguard/wg0.sock ]; do i=$((i+1)); [ $i -ge 120 ] && exit 1; sleep 0.5; done; "+
		"wg set wg0 private-key /etc/wggo/key peer %s endpoint %s:%d allowed-ips %s/32 persistent-keepalive 25 && "+
		"ip addr add %s/24 dev wg0 && ip link set wg0 up", hostKey.Public().String(), testbed.WANA, wgGoPort, wgGoHostIP, wgGoGuestIP)); err != nil {
		return fail(fmt.Errorf("guest wireguard-go: %w; its log:\n%s", err, wggo.logTail(ctx)))
	}
	if err := guestPing(ctx, vm, wgGoHostIP, 30); err != nil {
		return fail(fmt.Errorf("stock wireguard-go tunnel: %w", err))
	}

	a := VMPlane{Name: PlaneRouterAgent, Note: fmt.Sprintf("backend %s (%s)", st.WireGuard.Backend, st.WireGuard.Reason)}
	w := VMPlane{Name: PlaneRouterWGGo, Note: wireGoModule + "@" + version + ", linux/mipsle softfloat"}
	time.Sleep(idleSettle)
	if a.IdleRSS, a.IdleHWM, err = agent.memory(ctx); err != nil {
		return fail(err)
	}
	if w.IdleRSS, w.IdleHWM, err = wggo.memory(ctx); err != nil {
		return fail(err)
	}
	plain := VMPlane{Name: PlaneNoTunnel, Note: "to router-b's WAN address " + testbed.WANB + ", both tunnels idle"}
	log.Info("bench: router: idle", "agent_rss", MiB(a.IdleRSS), "agent_hwm", MiB(a.IdleHWM), "wireguard_go_rss", MiB(w.IdleRSS))
	for rep := 1; rep <= opt.Reps; rep++ {
		for _, pl := range []struct {
			p    *VMPlane
			proc *guestProc
			sink *testbed.Host
			dst  string
		}{{&w, wggo, r.s.RouterA, wgGoHostIP}, {&a, agent, r.s.RouterB, meshDst}} {
			bps, rss, hwm, err := transfer(ctx, vm, pl.proc, pl.sink, pl.dst, opt.Duration)
			if err != nil {
				log.Error("bench: router: transfer failed", "plane", pl.p.Name, "rep", rep, "err", err)
				pl.p.Errs = append(pl.p.Errs, fmt.Sprintf("transfer %d: %v", rep, err))
				continue
			}
			log.Info("bench: router: transfer", "plane", pl.p.Name, "rep", rep, "mbit_s", mbps(bps), "rss", MiB(rss), "hwm", MiB(hwm))
			pl.p.addLoad(bps, rss, hwm)
		}
	}
	if st, err := guestStatus(ctx, vm, ipkBinary, sock); err == nil && st.Peer("router-b") != nil {
		a.Path = st.Peer("router-b").Path
	}
	// The guest's ceiling, after the tunnels' runs: a line-rate transfer
	// leaves a TCG guest slow for a while, which would hurt whichever
	// tunnel came next.
	// One transfer: it is context, and a line-rate transfer can leave a
	// TCG guest's command channel unanswered for minutes.
	plain.Tries = 1
	for rep := 1; rep <= plain.Tries; rep++ {
		bps, _, _, err := transfer(ctx, vm, nil, r.s.RouterB, testbed.WANB, opt.Duration)
		if err != nil {
			log.Error("bench: router: transfer failed", "plane", plain.Name, "rep", rep, "err", err)
			plain.Errs = append(plain.Errs, fmt.Sprintf("transfer %d: %v", rep, err))
			continue
		}
		log.Info("bench: router: transfer", "plane", plain.Name, "rep", rep, "mbit_s", mbps(bps))
		plain.BitsPS = append(plain.BitsPS, bps)
	}
	run.Planes = []VMPlane{a, w, plain}
	return run
}
