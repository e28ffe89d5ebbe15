package daemon

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
)

// watchNetlink calls notify on every address or link change until ctx
// ends, except those of the mesh interface (our own Reconfig would
// otherwise wake the engine's path probing). The caller debounces and
// compares endpoint sets, which is simpler than reasoning about each
// message.
func watchNetlink(ctx context.Context, meshIf string, notify func()) error {
	done := make(chan struct{})
	defer close(done)
	addrs := make(chan netlink.AddrUpdate, 64)
	links := make(chan netlink.LinkUpdate, 64)
	errs := make(chan error, 2)
	onErr := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to address changes: %w", err)
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-addrs:
			if !ok {
				return fmt.Errorf("address subscription closed")
			}
			if l, err := netlink.LinkByIndex(u.LinkIndex); err != nil || !isMeshIf(l.Attrs().Name, meshIf) {
				notify()
			}
		case u, ok := <-links:
			if !ok {
				return fmt.Errorf("link subscription closed")
			}
			if u.Link == nil || !isMeshIf(u.Link.Attrs().Name, meshIf) {
				notify()
			}
		case err := <-errs:
			return fmt.Errorf("netlink subscription: %w", err)
		}
	}
}
