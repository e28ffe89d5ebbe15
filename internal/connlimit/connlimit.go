// Package connlimit caps a listener's open connections in total and per
// source address, so one client cannot take every slot (S18).
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// Source is the address connections are counted by: the IP, and for IPv6
// its /64 (one subscriber usually holds a whole /64). It is the zero Addr
// for an address it cannot parse.
func Source(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		h, _, err2 := net.SplitHostPort(remote)
		if err2 != nil {
			return netip.Addr{}
		}
		a, err3 := netip.ParseAddr(h)
		if err3 != nil {
			return netip.Addr{}
		}
		ap = netip.AddrPortFrom(a, 0)
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// Listener caps open connections in total (Accept waits for a free
// slot) and per source address (extra connections are closed at once, so
// one address cannot take every slot).
type Listener struct {
	net.Listener
	perSource int
	slots     chan struct{}
	done      chan struct{} // closed by Close: a waiting Accept returns
	closeOnce sync.Once

	mu  sync.Mutex
	per map[netip.Addr]int
}

// New wraps ln: at most max connections open (Accept waits for a free
// slot) and perSource per Source (extra ones are closed at once).
func New(ln net.Listener, max, perSource int) *Listener {
	return &Listener{Listener: ln, perSource: perSource, slots: make(chan struct{}, max), done: make(chan struct{}), per: make(map[netip.Addr]int)}
}

// Close closes the listener; an Accept waiting for a slot returns.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Accept returns the next connection within the caps.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		src := Source(c.RemoteAddr().String())
		l.mu.Lock()
		over := l.per[src] >= l.perSource
		if !over {
			l.per[src]++
		}
		l.mu.Unlock()
		if over {
			c.Close()
			<-l.slots
			continue
		}
		return &limitedConn{Conn: c, l: l, src: src}, nil
	}
}

func (l *Listener) release(src netip.Addr) {
	l.mu.Lock()
	if l.per[src]--; l.per[src] <= 0 {
		delete(l.per, src)
	}
	l.mu.Unlock()
	<-l.slots
}

type limitedConn struct {
	net.Conn
	l    *Listener
	src  netip.Addr
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.src) })
	return err
}
