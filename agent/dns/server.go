package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Options are fixed for a Server's lifetime.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	// UpstreamTimeout bounds one exchange with one upstream; default 2s.
	UpstreamTimeout time.Duration
	// MaxForwards bounds forwarded queries in flight, so a flood cannot
	// pile up goroutines and sockets on a small router; default 128.
	MaxForwards int
}

// Server answers mesh names and forwards the rest. It serves nothing
// (REFUSED) until the first SetConfig.
type Server struct {
	log     *slog.Logger
	timeout time.Duration
	fwdSem  chan struct{}
	snap    atomic.Pointer[snapshot]
	serial  atomic.Uint32

	ctx    context.Context // canceled by Close; bounds forwards
	cancel context.CancelFunc

	mu      sync.Mutex
	servers []*mdns.Server
	addrs   []netip.AddrPort
	wg      sync.WaitGroup
	closed  bool
}

// New returns a Server with no listeners and no config.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.UpstreamTimeout <= 0 {
		opts.UpstreamTimeout = 2 * time.Second
	}
	if opts.MaxForwards <= 0 {
		opts.MaxForwards = 128
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		log:     opts.Logger.With("component", "dns"),
		timeout: opts.UpstreamTimeout,
		fwdSem:  make(chan struct{}, opts.MaxForwards),
		ctx:     ctx,
		cancel:  cancel,
	}
}

// SetConfig swaps in a new snapshot atomically: a query sees either the
// old or the new one, never a mix. An invalid config is rejected and the
// previous one stays; invalid records are skipped and logged.
func (s *Server) SetConfig(c Config) error {
	snap, warns, err := compile(c, s.serial.Add(1))
	if err != nil {
		return err
	}
	for _, w := range warns {
		s.log.Warn("skipping record", "err", w)
	}
	s.snap.Store(snap)
	return nil
}

// Listen binds UDP and TCP on each address (the same port for both; port
// 0 picks one) and serves until Close.
func (s *Server) Listen(addrs ...netip.AddrPort) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dns: listen on a closed server")
	}
	for _, a := range addrs {
		pc, ln, err := listenBoth(a)
		if err != nil {
			return err
		}
		bound := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		s.addrs = append(s.addrs, bound)
		for _, srv := range []*mdns.Server{
			{PacketConn: pc, Handler: s},
			{Listener: ln, Handler: s},
		} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			s.servers = append(s.servers, srv)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				if err := srv.ActivateAndServe(); err != nil {
					s.log.Error("serve", "addr", bound, "err", err)
				}
			}()
			// Shutdown of a server that has not started fails, so wait.
			<-started
		}
		s.log.Info("listening", "addr", bound)
	}
	return nil
}

// listenBoth binds UDP then TCP on the same port, retrying random ports
// when the TCP side is taken.
func listenBoth(a netip.AddrPort) (net.PacketConn, net.Listener, error) {
	for try := 0; ; try++ {
		pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen udp %s: %w", a, err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: a.Addr().AsSlice(), Port: port, Zone: a.Addr().Zone()})
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if a.Port() != 0 || try >= 10 {
			return nil, nil, fmt.Errorf("dns: listen tcp %s port %d: %w", a.Addr(), port, err)
		}
	}
}

// Addrs are the bound addresses (with the ports actually chosen).
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.addrs...)
}

// Close stops the listeners and aborts forwards in flight.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	s.cancel()
	var errs []error
	for _, srv := range servers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		errs = append(errs, srv.ShutdownContext(ctx))
		cancel()
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// ServeDNS implements mdns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	src := addrOf(w.RemoteAddr())
	udp := w.LocalAddr().Network() == "udp"
	resp := s.handle(s.ctx, src, req)
	if resp == nil {
		return
	}
	if udp {
		resp.Truncate(udpLimit(req))
	}
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("write response", "client", src, "err", err)
	}
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// udpLimit is the largest UDP response the client said it takes.
func udpLimit(req *mdns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return max(int(opt.UDPSize()), mdns.MinMsgSize)
	}
	return mdns.MinMsgSize
}
