package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/internal/controlclient"
)

// S18: coord's rate limit (429 with Retry-After) is not a refusal: the
// registration is retried, no sooner than coord asked, and the node
// joins once coord lets it.
func TestRegisterRateLimitedRetries(t *testing.T) {
	self := node(1, "router-a")
	coord := newFakeCoord(self)
	coord.setRegErr(&controlclient.StatusError{Code: 429, Message: "too many challenges from your address; retry in 2 s", RetryAfter: 2 * time.Second})
	h := newHarness(t, t.TempDir(), coord)
	ctx := context.Background()
	h.d.Up(ctx, localapi.UpRequest{LoginServer: "https://198.18.0.2", AuthKey: testAuthKey, Timeout: 5 * time.Second})
	st := h.d.Status(ctx)
	if st.Coord.NextRetry == "" {
		t.Fatalf("no retry planned after a 429: %+v", st.Coord)
	}
	next, err := time.Parse(time.RFC3339, st.Coord.NextRetry)
	if err == nil && time.Until(next) < 500*time.Millisecond { // RFC3339 drops the fraction
		t.Fatalf("retry at %v, sooner than Retry-After 2 s", st.Coord.NextRetry)
	}
	coord.setRegErr(nil)
	go func() { <-coord.mapReqs; coord.open(self) }()
	waitFor(t, "joined after the rate limit", func() bool { return h.d.Status(ctx).BackendState == localapi.StateRunning })
	if n := coord.registerCount(); n < 2 {
		t.Fatalf("registrations = %d, want a retry", n)
	}
}
