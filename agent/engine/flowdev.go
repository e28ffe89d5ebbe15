package engine

import (
	"net"
	"os"

	"github.com/lanmesh/lanmesh/agent/magicsock"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// batchSize caps wireguard-go's batch (device.BatchSize is the larger of
// the TUN's and the Bind's). Each reader (TUN, UDP v4, UDP v6) pins a
// 64 KiB buffer per slot for its lifetime, and those count against the
// daemon's Go memory limit. The TUN's gso_max_segs is set to it so one
// TSO super-packet still fits one read.
//
// It must be 64, not less: a router forwards its LAN hosts' TCP, whose
// GRO/TSO super-packets carry up to ~48 segments (64 KiB at MSS 1380),
// and the kernel segments in software any super-packet with more segments
// than the TUN's gso_max_segs. With 32, every forwarded packet reached the
// TUN alone and offloads did nothing (0.5 Gbit/s a1 -> b1 with or without
// them); engine-to-engine tests missed it because a local TCP sender
// respects gso_max_segs. 64 also lets the Bind use UDP GRO. Measured a1 ->
// b1 (make bench topology, 2 cores): 3.3-3.4 Gbit/s at 31 MiB peak RSS
// with a 38 MiB Go memory limit; stock wireguard-go 3.6 at 240-350 MiB.
// A var so benchmarks can vary it (LMDP_BATCH).
var batchSize = 64

// flowTUN is the TUN as wireguard-go sees it: reads wait while too many
// outbound packets are in flight (out), writes release inbound credit (in).
type flowTUN struct {
	tun.Device
	out, in *inflight
	batch   int
}

func (t *flowTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if !t.out.wait() {
		return 0, os.ErrClosed
	}
	n, err := t.Device.Read(bufs, sizes, offset)
	t.out.add(n)
	return n, err
}

func (t *flowTUN) Write(bufs [][]byte, offset int) (int, error) {
	n, err := t.Device.Write(bufs, offset)
	t.in.release(len(bufs))
	return n, err
}

// BatchSize caps the device's batch: wireguard-go keeps a 64 KiB buffer
// per batch slot per reader, so the batch is part of the memory bound.
func (t *flowTUN) BatchSize() int { return min(t.batch, max(t.Device.BatchSize(), 1)) }

func (t *flowTUN) Close() error {
	t.out.close()
	t.in.close()
	return t.Device.Close()
}

// flowBind is the Bind as wireguard-go sees it: receives wait while too
// many inbound packets are in flight, sends release outbound credit. Only
// transport data counts; handshakes and keepalives never touch the TUN.
type flowBind struct {
	*magicsock.Conn
	out, in *inflight
}

func (b *flowBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, got, err := b.Conn.Open(port)
	for i, fn := range fns {
		fns[i] = b.wrapReceive(fn)
	}
	return fns, got, err
}

func (b *flowBind) wrapReceive(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		if !b.in.wait() {
			return 0, net.ErrClosed
		}
		n, err := fn(bufs, sizes, eps)
		data := 0
		for i := 0; i < n; i++ {
			if sizes[i] > 0 && magicsock.IsTransportData(bufs[i][:sizes[i]]) {
				data++
			}
		}
		b.in.add(data)
		return n, err
	}
}

func (b *flowBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	data := 0
	for _, p := range bufs {
		if magicsock.IsTransportData(p) {
			data++
		}
	}
	err := b.Conn.Send(bufs, ep)
	b.out.release(data)
	return err
}
