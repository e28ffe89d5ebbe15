package magicsock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/lanmesh/lanmesh/agent/disco"
	"github.com/lanmesh/lanmesh/agent/netcheck"
	"github.com/lanmesh/lanmesh/derp"
	"github.com/lanmesh/lanmesh/internal/key"
	"github.com/lanmesh/lanmesh/internal/sockmark"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// Options configure a Conn.
type Options struct {
	GSO bool // UDP_SEGMENT on send; switched off by itself when the kernel refuses
	GRO bool // UDP_GRO on receive; needs BatchSize to be a multiple of 64
	// BatchSize is how many packets one receive or send handles; default
	// conn.IdealBatchSize.
	BatchSize int
	// Handler gets every datagram that is not a WireGuard message (disco,
	// STUN). pkt is only valid during the call.
	Handler func(pkt []byte, src netip.AddrPort)
	Logger  *slog.Logger

	// OnPathChange is called (in its own goroutine's time, without locks
	// held) when a peer's path changes; OnRelayUp when the relay connects;
	// OnEndpoints when our candidate endpoints change.
	OnPathChange func(key.NodePublic)
	OnRelayUp    func()
	OnEndpoints  func([]netip.AddrPort)
	// InNS runs f on a thread in the data plane's network namespace, for
	// the sockets opened after Open (relay dials, interface listing).
	// Nil runs f directly.
	InNS func(f func())
	// IgnoreIface is the mesh interface, never a source of endpoints.
	IgnoreIface string
}

const (
	socketBuffer   = 7 << 20
	maxGROSegments = 64 // the kernel's UDP_GRO_CNT_MAX; also the UDP_SEGMENT limit
)

// Conn is a conn.Bind over one UDP socket per address family.
type Conn struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	v4     *socket
	v6     *socket
	port   uint16
	closed chan struct{} // of the current Open: ends the relay ReceiveFunc

	ctx     context.Context // ends at Shutdown
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	checker *netcheck.Checker
	disco   atomic.Pointer[disco.Manager]

	smu       sync.Mutex // SetConfig state
	priv      key.NodePrivate
	pub       key.NodePublic // priv's public half, under pmu (flushPending)
	dm        *wire.DERPMap
	dmNow     atomic.Pointer[wire.DERPMap] // dm, for readers that cannot take smu
	discoStop context.CancelFunc
	started   bool

	pmu    sync.RWMutex
	peers  map[key.NodePublic]*peerState
	byAddr map[netip.AddrPort]key.NodePublic // proven direct paths

	relayMu     sync.Mutex
	relay       *derp.Client // nil: not connected
	relayCode   string
	relayRegion int                  // region id of relay
	regions     map[int]*regionRelay // connections to peers' home regions other than ours
	home        int                  // region id; 0: not chosen yet
	report      *netcheck.Report
	local       []netip.AddrPort
	relayCh     chan relayPkt
	relayDrops  atomic.Int64
	relayWake   chan struct{}
	ncWake      chan struct{}

	// ifaceEndpoints lists interface candidates (interfaceEndpoints; unit
	// tests on the host's namespace list none, so disco finds no paths of
	// its own there).
	ifaceEndpoints func(port uint16, ignore string) []netip.AddrPort
	// noNetcheck: unit tests keep the home region the map's first.
	noNetcheck bool
	regionIdle time.Duration // regionIdle; shorter in tests
}

var _ conn.Bind = (*Conn)(nil)

// New returns a closed Conn; the WireGuard device opens it.
func New(opts Options) *Conn {
	if opts.BatchSize <= 0 {
		opts.BatchSize = conn.IdealBatchSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.InNS == nil {
		opts.InNS = func(f func()) { f() }
	}
	c := &Conn{opts: opts, log: opts.Logger.With("component", "magicsock"),
		peers: map[key.NodePublic]*peerState{}, byAddr: map[netip.AddrPort]key.NodePublic{}, regions: map[int]*regionRelay{},
		relayCh: make(chan relayPkt, relayQueue), relayWake: make(chan struct{}, 1), ncWake: make(chan struct{}, 1),
		ifaceEndpoints: interfaceEndpoints, regionIdle: regionIdle}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.checker, _ = netcheck.New(netcheck.Config{Send: c.WriteTo, Logger: c.log, Dial: c.dialInNS})
	if opts.GRO && opts.BatchSize%maxGROSegments != 0 {
		c.log.Info("UDP GRO off: batch size is not a multiple of 64", "batch", opts.BatchSize)
		c.opts.GRO = false
	}
	return c
}

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share (their
// Message types are the same type).
type batchConn interface {
	ReadBatch([]ipv6.Message, int) (int, error)
	WriteBatch([]ipv6.Message, int) (int, error)
}

type socket struct {
	udp  *net.UDPConn
	pc   batchConn
	is6  bool
	gso  atomic.Bool
	gro  bool
	msgs sync.Pool // *[]ipv6.Message of BatchSize
	log  *slog.Logger
}

func (c *Conn) BatchSize() int { return c.opts.BatchSize }

// Port is the UDP port the Conn listens on (0 while closed).
func (c *Conn) Port() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port
}

// Open listens on port (0 picks one) for IPv4 and, where the host has it,
// IPv6, on the same port number.
func (c *Conn) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.v4 != nil || c.v6 != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	for tries := 0; ; tries++ {
		v4, got, err := c.listen("udp4", port)
		if err != nil {
			return nil, 0, err
		}
		v6, _, err := c.listen("udp6", got)
		if err != nil && port == 0 && errors.Is(err, syscall.EADDRINUSE) && tries < 100 {
			v4.udp.Close()
			continue
		}
		if err != nil && !errors.Is(err, syscall.EAFNOSUPPORT) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			v4.udp.Close()
			return nil, 0, err
		}
		c.v4, c.v6, c.port = v4, v6, got
		c.closed = make(chan struct{})
		fns := []conn.ReceiveFunc{c.v4.receiveFunc(c.handleOther, c.endpointFor, c.holdCrossed), c.relayReceive(c.closed)}
		if v6 != nil {
			fns = append(fns, c.v6.receiveFunc(c.handleOther, c.endpointFor, c.holdCrossed))
		}
		c.log.Debug("listening", "port", got, "ipv6", v6 != nil, "gso", v4.gso.Load(), "gro", v4.gro)
		return fns, got, nil
	}
}

func (c *Conn) listen(network string, port uint16) (*socket, uint16, error) {
	s := &socket{is6: network == "udp6", log: c.log}
	wantGRO := c.opts.GRO
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var markErr error
		err := rc.Control(func(fd uintptr) {
			// Our packets leave through the main table even with an exit
			// node on (agent/router, docs/exit-nodes.md).
			markErr = sockmark.Set(int(fd))
			setBuffer(int(fd), unix.SO_RCVBUFFORCE, unix.SO_RCVBUF)
			setBuffer(int(fd), unix.SO_SNDBUFFORCE, unix.SO_SNDBUF)
			if wantGRO {
				s.gro = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
			}
			if c.opts.GSO {
				_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
				s.gso.Store(err == nil)
			}
		})
		return errors.Join(err, markErr)
	}}
	pc, err := lc.ListenPacket(context.Background(), network, ":"+strconv.Itoa(int(port)))
	if err != nil {
		return nil, 0, fmt.Errorf("listen %s port %d: %w", network, port, err)
	}
	s.udp = pc.(*net.UDPConn)
	if s.is6 {
		s.pc = ipv6.NewPacketConn(s.udp)
	} else {
		s.pc = ipv4.NewPacketConn(s.udp)
	}
	if wantGRO && !s.gro {
		c.log.Info("UDP GRO refused by the kernel; receiving without it", "network", network)
	}
	batch := c.opts.BatchSize
	s.msgs.New = func() any {
		msgs := make([]ipv6.Message, batch)
		for i := range msgs {
			msgs[i].Buffers = make(net.Buffers, 1)
			msgs[i].OOB = make([]byte, 0, gsoControlSpace+16)
		}
		return &msgs
	}
	return s, uint16(s.udp.LocalAddr().(*net.UDPAddr).Port), nil
}

// setBuffer raises a socket buffer past net.core.*mem_max when we may
// (CAP_NET_ADMIN), else as far as the sysctl allows: small buffers drop
// packets at speed.
func setBuffer(fd, force, plain int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, socketBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, socketBuffer)
	}
}

func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, s := range []*socket{c.v4, c.v6} {
		if s != nil {
			errs = append(errs, s.udp.Close())
		}
	}
	if c.closed != nil {
		close(c.closed)
		c.closed = nil
	}
	c.v4, c.v6, c.port = nil, nil, 0
	return errors.Join(errs...)
}

func (c *Conn) SetMark(mark uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range []*socket{c.v4, c.v6} {
		if s == nil {
			continue
		}
		rc, err := s.udp.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set SO_MARK: %w", serr)
		}
	}
	return nil
}

func (c *Conn) socketFor(a netip.Addr) (*socket, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.v4
	if a.Is6() && !a.Is4In6() {
		s = c.v6
	}
	if s == nil {
		if c.v4 == nil && c.v6 == nil {
			return nil, net.ErrClosed
		}
		return nil, fmt.Errorf("send to %s: %w", a, syscall.EAFNOSUPPORT)
	}
	return s, nil
}

// WriteTo sends one non-WireGuard datagram (disco, STUN) from the shared
// socket.
func (c *Conn) WriteTo(pkt []byte, dst netip.AddrPort) error {
	s, err := c.socketFor(dst.Addr())
	if err != nil {
		return err
	}
	_, err = s.udp.WriteToUDPAddrPort(pkt, dst)
	return err
}
