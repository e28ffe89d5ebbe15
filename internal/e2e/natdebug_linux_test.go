package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/internal/testbed"
)

func TestNATDebug(t *testing.T) {
	m := meshWith(t, testbed.StandardOptions{NATA: testbed.NATRestrictedAccept, NATB: testbed.NATRestrictedAccept}, testbed.MeshOptions{Verbose: true})
	go m.A1.Ping(context.Background(), testbed.B1IP, 30, time.Second)
	for i := 0; i < 6; i++ {
		for _, h := range m.NATBoxes {
			r, _ := h.Run(context.Background(), "conntrack", "-L", "-p", "udp")
			t.Logf("%s t=%d:\n%s%s", h.Name, i, r.Stdout, r.Stderr)
		}
		time.Sleep(2 * time.Second)
	}
}
