package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
)

// Options describe one VM.
type Options struct {
	Name string // short name: logs are <name>.console.log and <name>.qemu.log
	Arch Arch
	// Host is the testbed namespace QEMU runs in; its tap device (Tap)
	// becomes the guest's eth0. Tap "" gives the guest no NIC at all.
	Host *testbed.Host
	Tap  string
	// MoreTaps are further tap devices in Host, one NIC each, which the
	// guest sees as eth1, eth2, ... in this order (e.g. a router's LAN
	// port on a segment's bridge: testbed.Segment.AttachTap). They need
	// Tap.
	MoreTaps []string
	// Modules are loaded at boot, after their dependencies (and the NIC's).
	Modules []string
	// Lanmesh, when set, is a guest-architecture lanmesh binary installed
	// as /usr/bin/lanmesh (see RouterBinary).
	Lanmesh string
	// Files are extra guest files by absolute path.
	Files  map[string]File
	MemMiB int // default per architecture (amd64 256, mipsle 128)
	// BootTimeout bounds QEMU start to command channel; 0 is 4 minutes.
	BootTimeout time.Duration
}

// File is one extra guest file.
type File struct {
	Data []byte
	Mode fs.FileMode // permission bits; 0 means 0644
}

// VM is a running guest.
type VM struct {
	Name     string
	Arch     Arch
	Kernel   *Kernel
	Console  string        // path of the serial console log (ttyS0)
	BootTime time.Duration // QEMU start to command channel ready

	proc *testbed.Proc
	dir  string

	mu   sync.Mutex // serialises commands on the channel
	conn net.Conn
	rd   *bufio.Reader
	seq  int
}

// Boot builds the initramfs, starts QEMU in opt.Host's namespace and waits
// until the guest's command channel answers (at most opt.BootTimeout,
// default 4 minutes: TCG on a shared 2-core machine is slow).
func Boot(ctx context.Context, opt Options) (*VM, error) {
	spec, err := opt.Arch.spec()
	if err != nil {
		return nil, err
	}
	if opt.Host == nil {
		return nil, errors.New("vmtest: Options.Host is required: QEMU runs inside a testbed namespace")
	}
	if len(opt.MoreTaps) > 0 && opt.Tap == "" {
		return nil, errors.New("vmtest: Options.MoreTaps needs Options.Tap (the guest's eth0)")
	}
	if opt.Name == "" || strings.ContainsAny(opt.Name, "/ ") {
		return nil, fmt.Errorf("vmtest: VM name %q: want a short name without / or space", opt.Name)
	}
	k, err := FetchKernel(ctx, opt.Arch)
	if err != nil {
		return nil, err
	}
	// Short: the unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "lmvm-")
	if err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	vm := &VM{Name: opt.Name, Arch: opt.Arch, Kernel: k, dir: dir,
		Console: filepath.Join(opt.Host.World().LogDir, opt.Name+".console.log")}
	ok := false
	defer func() {
		if !ok {
			vm.Close()
		}
	}()
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := buildInitramfs(k, spec, opt, initrd); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "cmd.sock")
	mem := opt.MemMiB
	if mem == 0 {
		mem = spec.memMiB
	}
	args := []string{spec.qemu}
	args = append(args, spec.machine...)
	args = append(args,
		"-m", strconv.Itoa(mem),
		"-nodefaults", "-display", "none", "-no-reboot",
		"-kernel", k.Vmlinuz, "-initrd", initrd,
		// panic=-1 reboots at once on a panic, and -no-reboot turns that
		// into QEMU exiting, so a dead guest fails fast.
		"-append", "console=ttyS0 rdinit=/init panic=-1 loglevel=5",
		"-serial", "file:"+vm.Console,
		// wait=on: the guest does not start until the harness is
		// connected, so no line of the channel is lost.
		"-chardev", "socket,id=cmd,path="+sock+",server=on,wait=on",
		"-serial", "chardev:cmd",
	)
	if opt.Tap != "" {
		args = append(args,
			"-netdev", "tap,id=n0,ifname="+opt.Tap+",script=no,downscript=no",
			// romfile= : no option ROM (Debian's mipsel QEMU lacks efi-*.rom).
			"-device", "virtio-net-pci,netdev=n0,romfile=,mac="+randomMAC())
		for i, tap := range opt.MoreTaps {
			id := "n" + strconv.Itoa(i+1)
			args = append(args,
				"-netdev", "tap,id="+id+",ifname="+tap+",script=no,downscript=no",
				"-device", "virtio-net-pci,netdev="+id+",romfile=,mac="+randomMAC())
		}
	} else {
		args = append(args, "-nic", "none")
	}
	start := time.Now()
	vm.proc, err = opt.Host.Start(opt.Name+".qemu", args...)
	if err != nil {
		return nil, err
	}
	bootTimeout := opt.BootTimeout
	if bootTimeout <= 0 {
		bootTimeout = 4 * time.Minute
	}
	bootCtx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	if err := vm.connect(bootCtx, sock); err != nil {
		return nil, err
	}
	if err := vm.waitReady(bootCtx); err != nil {
		return nil, err
	}
	vm.BootTime = time.Since(start)
	if b, _ := os.ReadFile(vm.Console); bytes.Contains(b, []byte("LMVM-MODFAIL")) {
		return nil, fmt.Errorf("vmtest: %s: a module failed to load:\n%s", opt.Name, grepLines(string(b), "LMVM-MODFAIL", "insmod"))
	}
	ok = true
	return vm, nil
}

func buildInitramfs(k *Kernel, spec archSpec, opt Options, out string) error {
	var r Initramfs
	bb, err := os.ReadFile(k.Busybox)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	_ = r.Add("/bin/busybox", 0o755, bb)
	_ = r.Add("/init", 0o755, []byte(initScript))
	_ = r.Add("/etc/lmvm/cmdloop", 0o644, []byte(cmdLoop))
	want := append([]string(nil), opt.Modules...)
	if opt.Tap != "" {
		want = append(spec.nicModules, want...)
	}
	mods, err := k.Modules.Resolve(want...)
	if err != nil {
		return err
	}
	var order strings.Builder
	for _, m := range mods {
		b, err := ReadModule(m.Path)
		if err != nil {
			return err
		}
		if err := r.Add("/lib/modules/lmvm/"+m.Name+".ko", 0o644, b); err != nil {
			return err
		}
		order.WriteString(m.Name + "\n")
	}
	_ = r.Add("/etc/lmvm/modules", 0o644, []byte(order.String()))
	if opt.Lanmesh != "" {
		b, err := os.ReadFile(opt.Lanmesh)
		if err != nil {
			return fmt.Errorf("vmtest: lanmesh binary: %w", err)
		}
		_ = r.Add("/usr/bin/lanmesh", 0o755, b)
	}
	for name, f := range opt.Files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := r.Add(name, mode, f.Data); err != nil {
			return err
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := r.WriteTo(w); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("vmtest: write initramfs: %w", err)
	}
	return f.Close()
}

func (vm *VM) connect(ctx context.Context, sock string) error {
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			vm.conn, vm.rd = c, bufio.NewReaderSize(c, 64<<10)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vmtest: %s: QEMU never opened its command socket: %w\n%s", vm.Name, err, vm.qemuLog())
		case <-vm.proc.Done():
			return fmt.Errorf("vmtest: %s: QEMU exited: %v\n%s", vm.Name, vm.proc.Err(), vm.qemuLog())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readLine reads one channel line, giving up when ctx ends or QEMU exits.
func (vm *VM) readLine(ctx context.Context) (string, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(10 * time.Minute)
	}
	var partial strings.Builder
	for {
		// Short read deadlines so a dead QEMU is noticed within a second.
		step := time.Now().Add(time.Second)
		if step.After(dl) {
			step = dl
		}
		_ = vm.conn.SetReadDeadline(step)
		s, err := vm.rd.ReadString('\n')
		partial.WriteString(s)
		if err == nil {
			return strings.TrimRight(partial.String(), "\r\n"), nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return "", fmt.Errorf("vmtest: %s: command channel: %w\n%s", vm.Name, err, vm.tail())
		}
		if !vm.proc.Running() {
			return "", fmt.Errorf("vmtest: %s: QEMU exited: %v\n%s", vm.Name, vm.proc.Err(), vm.tail())
		}
		if !time.Now().Before(dl) || ctx.Err() != nil {
			return "", fmt.Errorf("vmtest: %s: no answer from the guest in time\n%s", vm.Name, vm.tail())
		}
	}
}

func (vm *VM) waitReady(ctx context.Context) error {
	for {
		l, err := vm.readLine(ctx)
		if err != nil {
			return err
		}
		if strings.HasPrefix(l, "LMVM-READY") {
			return nil
		}
	}
}

// Exec runs a shell script in the guest (busybox sh) and returns its
// combined stdout and stderr and its exit code. ctx's deadline (default
// 60 s) bounds it inside the guest too: the script is killed there.
func (vm *VM) Exec(ctx context.Context, script string) (string, int, error) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.conn == nil {
		return "", -1, fmt.Errorf("vmtest: %s is not running", vm.Name)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	secs := int(time.Until(dl).Seconds())
	if secs < 1 {
		return "", -1, fmt.Errorf("vmtest: %s: no time left for %q", vm.Name, script)
	}
	vm.seq++
	id := strconv.Itoa(vm.seq)
	line := fmt.Sprintf("%s %d %s\n", id, secs, base64.StdEncoding.EncodeToString([]byte(script)))
	_ = vm.conn.SetWriteDeadline(dl)
	if _, err := vm.conn.Write([]byte(line)); err != nil {
		return "", -1, fmt.Errorf("vmtest: %s: send command: %w", vm.Name, err)
	}
	// The guest kills the script at secs; give the answer a little longer.
	rctx, cancel := context.WithDeadline(context.Background(), dl.Add(15*time.Second))
	defer cancel()
	var b64 strings.Builder
	in := false
	for {
		l, err := vm.readLine(rctx)
		if err != nil {
			return "", -1, fmt.Errorf("%w (while running %q)", err, script)
		}
		switch {
		case l == "LMVM-BEGIN "+id:
			in = true
		case strings.HasPrefix(l, "LMVM-END "+id+" "):
			rc, err := strconv.Atoi(strings.TrimPrefix(l, "LMVM-END "+id+" "))
			if err != nil {
				return "", -1, fmt.Errorf("vmtest: %s: bad end marker %q", vm.Name, l)
			}
			out, err := base64.StdEncoding.DecodeString(b64.String())
			if err != nil {
				return "", -1, fmt.Errorf("vmtest: %s: output of %q: %w", vm.Name, script, err)
			}
			return string(out), rc, nil
		case in:
			b64.WriteString(l)
		}
	}
}

// Run is Exec that fails on a non-zero exit code, with the output.
func (vm *VM) Run(ctx context.Context, script string) (string, error) {
	out, rc, err := vm.Exec(ctx, script)
	if err != nil {
		return out, err
	}
	if rc != 0 {
		return out, fmt.Errorf("vmtest: %s: %q exited %d:\n%s", vm.Name, script, rc, out)
	}
	return out, nil
}

// Close powers the guest off (poweroff -f: QEMU exits), kills QEMU if it
// has not gone within 20 s, and removes the VM's scratch files. The
// console log stays in the world's log directory.
func (vm *VM) Close() error {
	if vm.proc != nil && vm.proc.Running() && vm.conn != nil {
		vm.mu.Lock()
		vm.seq++
		_, _ = fmt.Fprintf(vm.conn, "%d 10 %s\n", vm.seq, base64.StdEncoding.EncodeToString([]byte("sync; poweroff -f")))
		vm.mu.Unlock()
		select {
		case <-vm.proc.Done():
		case <-time.After(20 * time.Second):
		}
	}
	if vm.proc != nil {
		vm.proc.Kill()
	}
	if vm.conn != nil {
		vm.conn.Close()
	}
	return os.RemoveAll(vm.dir)
}

// Exited reports whether QEMU has exited (the guest powered off or died).
func (vm *VM) Exited() bool { return vm.proc != nil && !vm.proc.Running() }

func (vm *VM) qemuLog() string {
	if vm.proc == nil {
		return ""
	}
	return "qemu: " + lastLines(vm.proc.Log(), 20)
}

func (vm *VM) tail() string {
	b, _ := os.ReadFile(vm.Console)
	return vm.qemuLog() + "\nconsole (" + vm.Console + "):\n" + lastLines(string(b), 30)
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

func grepLines(s string, needles ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, n := range needles {
			if strings.Contains(l, n) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// randomMAC is a locally administered unicast address in QEMU's 52:54:00.
func randomMAC() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}
