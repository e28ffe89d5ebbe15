package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lanmesh/lanmesh/internal/testenv"
)

// The TUN's gso_max_segs must follow the batch, or wireguard-go drops TSO
// super-packets that do not fit one read; where the kernel cannot set it
// the batch must grow instead.
func TestCreateTUNCapsGSOSegments(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name      string
		offload   bool
		refuse    bool
		wantBatch int // 0: the device's own batch
		wantSegs  int // on the link; 0: not checked
	}{
		{name: "offloads", offload: true, wantBatch: 16, wantSegs: 16},
		{name: "kernel cannot set segs", offload: true, refuse: true, wantBatch: 0},
		{name: "no offloads", offload: false, wantBatch: 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.refuse {
				setGSOMaxSegsHook = func(string, int) error { return unix.EOPNOTSUPP }
				t.Cleanup(func() { setGSOMaxSegsHook = nil })
			}
			ns := newNS(t)
			var batch, devBatch, segs int
			var err error
			if nerr := inNS(ns, func() {
				dev, b, cerr := createTUN("lmtest0", 1420, tc.offload, 16, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err = cerr; cerr != nil {
					return
				}
				defer dev.Close() // the link goes with the fd
				batch, devBatch = b, dev.BatchSize()
				l, lerr := netlink.LinkByName("lmtest0")
				if err = lerr; lerr == nil {
					segs = int(l.Attrs().GSOMaxSegs)
				}
			}); nerr != nil {
				t.Fatal(nerr)
			}
			if err != nil {
				t.Fatalf("createTUN: %v", err)
			}
			if tc.wantSegs != 0 && segs != tc.wantSegs {
				t.Errorf("link gso_max_segs = %d, want %d", segs, tc.wantSegs)
			}
			want := tc.wantBatch
			if want == 0 {
				want = max(devBatch, 16)
			}
			if batch != want {
				t.Errorf("batch = %d, want %d (device batch %d)", batch, want, devBatch)
			}
		})
	}
}

// The cap is on the link the kernel uses: read it back from sysfs while
// the engine runs.
func TestEngineLinkGSOSegments(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	startEngine(t, ns, Options{Offloads: Offloads{TUN: true, UDPGSO: true, UDPGRO: true}})
	out := run(t, "ip", "-n", ns, "-d", "link", "show", "lanmesh0")
	if !strings.Contains(out, " gso_max_segs "+strconv.Itoa(batchSize)+" ") {
		t.Fatalf("want gso_max_segs %d (the batch) on the link:\n%s", batchSize, out)
	}
}

// A TCP bulk transfer through two engines with a batch far below a full
// TSO super-packet (64 KiB / MSS 1380 = 48 segments): without the segment
// cap every super-packet is dropped and the transfer stalls.
func TestBulkTCPWithSmallBatch(t *testing.T) {
	requireRoot(t)
	testenv.RequireTool(t, "iperf3", "iperf3")
	old := batchSize
	batchSize = 8
	t.Cleanup(func() { batchSize = old })
	p := newPair(t, Options{Offloads: Offloads{TUN: true, UDPGSO: true, UDPGRO: true}})
	p.configure(t, []netip.AddrPort{wanB}, []netip.AddrPort{wanA}, nil, nil)
	if err := ping(p.nsA, "100.64.0.2", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "exec", p.nsB, "iperf3", "-s", "-1", "-D", "-B", "100.64.0.2")
	time.Sleep(300 * time.Millisecond)
	// 64 MiB within 30 s is 18 Mbit/s: far below what works (>1 Gbit/s
	// here), far above a stalled transfer living on retransmits.
	cmd := exec.Command("ip", "netns", "exec", p.nsA, "timeout", "30", "iperf3", "-c", "100.64.0.2", "-n", "64M", "-J")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 124 {
			t.Fatal("64 MiB did not pass within 30 s: super-packets are being dropped")
		}
		t.Fatalf("iperf3: %v\n%s", err, out)
	}
	var r struct {
		End struct {
			SumSent struct {
				Bytes float64 `json:"bytes"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("iperf3 output: %v", err)
	}
	if r.End.SumSent.Bytes < 64<<20 {
		t.Fatalf("sent %.0f bytes, want 64 MiB", r.End.SumSent.Bytes)
	}
	t.Logf("64 MiB at %s with batch %d", fmt.Sprintf("%.2f Gbit/s", r.End.SumReceived.BitsPerSecond/1e9), batchSize)
}
