package magicsock

import (
	"context"
	"errors"
	"net"

	"github.com/lanmesh/lanmesh/internal/sockmark"
)

// inNS runs f in the data plane's network namespace (Options.InNS).
func (c *Conn) inNS(f func()) { c.opts.InNS(f) }

// dialInNS is netcheck's dialer: its TCP sockets belong in our namespace.
func (c *Conn) dialInNS(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := errNotRun
	c.inNS(func() {
		d := net.Dialer{Control: sockmark.Control} // around the exit node
		conn, err = d.DialContext(ctx, network, addr)
	})
	return conn, err
}

// errNotRun: InNS could not enter the namespace, so f did not run.
var errNotRun = errors.New("magicsock: could not enter the data plane's network namespace")

// Shutdown stops disco, the relay client and netcheck for good. The
// device's Close only closes the sockets (it also does that on a rebind).
func (c *Conn) Shutdown() {
	c.cancel()
	c.resetRelay()
	c.closeRegionRelays()
	c.wg.Wait()
}
