package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
	"github.com/lanmesh/lanmesh/internal/vmtest"
)

// archTitle is how the reports name a guest.
func archTitle(a vmtest.Arch) string {
	switch a {
	case vmtest.AMD64:
		return "x86-64"
	case vmtest.MIPSLE:
		return "MIPS (Malta 4Kc)"
	}
	return string(a)
}

// RunVM measures lanmesh's kernel and userspace WireGuard backends in the
// same guest boot, one guest per architecture: the agent joins with each
// backend (as two nodes), is measured idle, and moves Reps transfers of
// Duration to router-b (a userspace agent on the host). Both use the agent's one nftables table and
// device name, so they cannot run in a guest at once: each transfer
// starts its backend's agent (joined once) and stops it after, and the
// two backends' transfers alternate, so drift of the loaded host hits
// both alike.
func RunVM(ctx context.Context, opt VMOptions) (*VMResult, error) {
	if err := opt.check("vm"); err != nil {
		return nil, err
	}
	arches := opt.Arches
	if len(arches) == 0 {
		arches = []vmtest.Arch{vmtest.AMD64, vmtest.MIPSLE}
	}
	res := &VMResult{Env: CurrentEnv(), Reps: opt.Reps, Duration: opt.Duration,
		Setup: "Each guest boots Debian's own kernel (linux-image-amd64; linux-image-4kc-malta for MIPS, whose wireguard.ko " +
			"loads with its dependencies) with a busybox initramfs and the stripped router build of `lanmesh` (bin/linux_<arch>/lanmesh), " +
			"behind an easy-NAT box of the namespace testbed. The far end of every transfer is router-b, a userspace lanmesh agent " +
			"in a host namespace: it runs natively while the guest is emulated, so the guest is the bottleneck and the numbers " +
			"measure the guest's cost. A transfer is busybox `nc` in the guest sending /dev/zero over the mesh to a TCP sink on " +
			"router-b's mesh address, timed at the receiver. The agent runs with `--backend kernel` and (as a second node) " +
			"`--backend userspace`, in the same boot; the agents take turns (one transfer each, agent stopped in between; they share " +
			"the nftables table and device name), and `lanmesh status --json` confirms the backend. Memory is the agent's " +
			"/proc/PID/status in the guest: idle = joined, tunnel up, " + idleSettle.String() + " later; during transfer = " +
			"VmRSS sampled halfway and VmHWM (reset before each transfer), max over transfers. With the kernel backend the " +
			"data plane is in the kernel, so the agent's RSS is control plane only. The no-tunnel row is one such transfer to " +
			"router-b's WAN address with no agent running: the guest's own ceiling under TCG."}
	rig, err := newVMRig(ctx, opt.Log)
	if err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	defer rig.close()
	for i, a := range arches {
		run := rig.backendRun(ctx, opt, a, i)
		if len(run.Failed()) > 0 {
			rig.w.KeepLogs()
		}
		res.Runs = append(res.Runs, run)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	if len(res.Failed()) > 0 {
		opt.Log.Warn("bench: vm: logs kept", "dir", rig.w.LogDir)
	}
	return res, nil
}

func (r *vmRig) backendRun(ctx context.Context, opt VMOptions, arch vmtest.Arch, n int) VMRun {
	run := VMRun{Arch: archTitle(arch)}
	fail := func(err error) VMRun {
		opt.Log.Error("bench: vm: setup failed", "arch", arch, "err", err)
		run.Errs = append(run.Errs, err.Error())
		return run
	}
	if err := vmtest.CanBoot(arch); err != nil {
		return fail(err)
	}
	site, err := r.addSite(fmt.Sprintf("nat-vm%d", n), n)
	if err != nil {
		return fail(err)
	}
	bin, err := vmtest.RouterBinary(ctx, arch)
	if err != nil {
		return fail(err)
	}
	backends := []string{"kernel", "userspace"}
	files := map[string]vmtest.File{}
	for _, b := range backends {
		k, err := r.coord.CreateKey(ctx)
		if err != nil {
			return fail(err)
		}
		// The key travels as a file, never on a command line (S11).
		files["/etc/lanmesh/authkey-"+b] = vmtest.File{Data: []byte(k + "\n"), Mode: 0o600}
	}
	mods := append([]string{"wireguard"}, vmModules...)
	opt.Log.Info("bench: vm: booting", "arch", arch)
	vm, err := vmtest.Boot(ctx, vmtest.Options{Name: "vm-" + string(arch), Arch: arch, Host: site.nat, Tap: site.tap,
		Modules: mods, Lanmesh: bin, Files: files})
	if err != nil {
		return fail(err)
	}
	defer vm.Close()
	run.Kernel, run.Boot = vm.Kernel.Package, vm.BootTime
	run.Machine = vmMachine(arch)
	opt.Log.Info("bench: vm: booted", "arch", arch, "kernel", vm.Kernel.Package, "boot", vm.BootTime.Round(time.Millisecond))
	if err := site.netUp(ctx, vm); err != nil {
		return fail(err)
	}
	bas := []*guestBackend{{b: "kernel", plane: VMPlane{Name: PlaneKernel}}, {b: "userspace", plane: VMPlane{Name: PlaneUserspace}}}
	plain := VMPlane{Name: PlaneNoTunnel, Note: "to router-b's WAN address " + testbed.WANB + ", no agent running"}
	for rep := 1; rep <= opt.Reps; rep++ {
		for _, ba := range bas {
			if err := r.backendRep(ctx, opt, vm, ba, rep); err != nil {
				opt.Log.Error("bench: vm: run failed", "vm", vm.Name, "backend", ba.b, "rep", rep, "err", err)
				ba.plane.Errs = append(ba.plane.Errs, fmt.Sprintf("run %d: %v", rep, err))
			}
		}
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
			opt.Log.Error("bench: vm: transfer failed", "vm", vm.Name, "plane", plain.Name, "rep", rep, "err", err)
			plain.Errs = append(plain.Errs, fmt.Sprintf("transfer %d: %v", rep, err))
		} else {
			opt.Log.Info("bench: vm: transfer", "vm", vm.Name, "plane", plain.Name, "rep", rep, "mbit_s", mbps(bps))
			plain.BitsPS = append(plain.BitsPS, bps)
		}
	}
	for _, ba := range bas {
		run.Planes = append(run.Planes, ba.plane)
	}
	run.Planes = append(run.Planes, plain)
	return run
}

const guestSock = "/run/lanmesh.sock"

// guestBackend is one node of the guest, running one backend.
type guestBackend struct {
	b      string
	plane  VMPlane
	joined bool
}

// backendRep starts the agent with backend ba.b (joining the first time,
// then measuring it idle), moves one transfer to router-b, and stops it,
// so the two backends' transfers interleave.
func (r *vmRig) backendRep(ctx context.Context, opt VMOptions, vm *vmtest.VM, ba *guestBackend, rep int) (err error) {
	b, p := ba.b, &ba.plane
	agent, err := startGuest(ctx, vm, "agent-"+b, fmt.Sprintf("lanmesh agent --backend %s --state-dir /var/lib/lanmesh-%s --socket %s --log-level warn", b, b, guestSock))
	if err != nil {
		return err
	}
	defer func() {
		if serr := agent.stop(ctx); serr != nil && err == nil {
			err = serr
		}
	}()
	withLog := func(err error) error { return fmt.Errorf("%w; agent log:\n%s", err, agent.logTail(ctx)) }
	if _, err := waitGuestStatus(ctx, vm, "lanmesh", guestSock, "local API", 2*time.Minute, func(*testbed.Status) bool { return true }); err != nil {
		return withLog(err)
	}
	if !ba.joined {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := vm.Run(cctx, fmt.Sprintf("lanmesh --socket %s up --login-server %s --auth-key file:/etc/lanmesh/authkey-%s --hostname vm-%s --timeout 90s", guestSock, r.coord.URL, b, b))
		cancel()
		if err != nil {
			return withLog(err)
		}
		ba.joined = true
	}
	st, err := waitGuestStatus(ctx, vm, "lanmesh", guestSock, "router-b in the netmap", 2*time.Minute, func(s *testbed.Status) bool {
		return s.BackendState == "Running" && s.Peer("router-b") != nil && s.Peer("router-b").IPv4() != ""
	})
	if err != nil {
		return withLog(err)
	}
	if st.WireGuard.Backend != b {
		return fmt.Errorf("agent runs the %q backend (%s), want %s", st.WireGuard.Backend, st.WireGuard.Reason, b)
	}
	p.Note = fmt.Sprintf("status: backend %s (%s)", st.WireGuard.Backend, st.WireGuard.Reason)
	dst := st.Peer("router-b").IPv4()
	if err := guestPing(ctx, vm, dst, 30); err != nil {
		return withLog(err)
	}
	if p.IdleRSS == 0 {
		time.Sleep(idleSettle)
		if p.IdleRSS, p.IdleHWM, err = agent.memory(ctx); err != nil {
			return err
		}
		opt.Log.Info("bench: vm: idle", "vm", vm.Name, "backend", b, "rss", MiB(p.IdleRSS), "hwm", MiB(p.IdleHWM))
	}
	bps, rss, hwm, err := transfer(ctx, vm, agent, r.s.RouterB, dst, opt.Duration)
	if err != nil {
		return err
	}
	opt.Log.Info("bench: vm: transfer", "vm", vm.Name, "backend", b, "rep", rep, "mbit_s", mbps(bps), "rss", MiB(rss), "hwm", MiB(hwm))
	p.addLoad(bps, rss, hwm)
	if st, err := guestStatus(ctx, vm, "lanmesh", guestSock); err == nil && st.Peer("router-b") != nil {
		p.Path = strings.TrimSpace(st.Peer("router-b").Path)
	}
	return nil
}

// vmMachine describes the QEMU machine of arch for the reports.
func vmMachine(a vmtest.Arch) string {
	switch a {
	case vmtest.AMD64:
		return "qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 256"
	case vmtest.MIPSLE:
		return "qemu-system-mipsel -M malta -accel tcg -m 128"
	}
	return string(a)
}
