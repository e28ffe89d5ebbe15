package vmtest

// initScript is the guest's /init (PID 1). It mounts the pseudo file
// systems, loads the modules listed in /etc/lmvm/modules in order, and
// then serves the command channel on the second serial port (ttyS1) for
// the rest of the VM's life; kernel messages stay on ttyS0.
const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /var/run /var/lib /sbin /usr/bin /usr/sbin /etc
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/net
[ -e /dev/net/tun ] || mknod /dev/net/tun c 10 200
echo "lmvm: modules"
while read -r m; do
	insmod "/lib/modules/lmvm/$m.ko" || echo "LMVM-MODFAIL $m"
done </etc/lmvm/modules
ip link set lo up
export PATH=/usr/bin:/usr/sbin:/bin:/sbin HOME=/root
mkdir -p /root
stty -F /dev/ttyS1 raw -echo
echo "lmvm: command channel on ttyS1"
exec sh /etc/lmvm/cmdloop </dev/ttyS1 >/dev/ttyS1 2>/dev/ttyS0
`

// cmdLoop reads "<id> <timeout-seconds> <base64 script>" lines and answers
// each with LMVM-BEGIN <id>, the combined output in base64 (a raw tty
// carries it unchanged) and LMVM-END <id> <exit code>. A script runs in
// its own session with stdin closed; background jobs it starts outlive it.
const cmdLoop = `echo "LMVM-READY $(cut -d' ' -f1 /proc/uptime)"
while read -r id secs b64; do
	echo "$b64" | base64 -d >/tmp/lmvm.sh
	timeout -s KILL "$secs" sh /tmp/lmvm.sh </dev/null >/tmp/lmvm.out 2>&1
	rc=$?
	echo "LMVM-BEGIN $id"
	base64 /tmp/lmvm.out
	echo "LMVM-END $id $rc"
done
poweroff -f
`
