package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lanmesh/lanmesh/agent/localapi"
	"github.com/lanmesh/lanmesh/internal/controlclient"
	"github.com/lanmesh/lanmesh/internal/wire"
)

// A first `up` against a coord that cannot be reached fails at once with
// the network error, leaves it in status, and keeps retrying with
// backoff until coord answers.
func TestUpRetriesUnreachableCoord(t *testing.T) {
	self := node(1, "router-a")
	coord := newFakeCoord(self)
	coord.setRegErr(fmtErr())
	h := newHarness(t, t.TempDir(), coord)
	ctx := context.Background()

	start := time.Now()
	_, err := h.d.Up(ctx, localapi.UpRequest{LoginServer: "https://198.18.0.2", AuthKey: testAuthKey, Timeout: 10 * time.Second})
	var le *localapi.Error
	if !errors.As(err, &le) || le.Code != 502 || !strings.Contains(le.Msg, "connection refused") || !strings.Contains(le.Msg, "https://198.18.0.2") {
		t.Fatalf("Up = %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("Up waited %v for a network error", time.Since(start))
	}
	st := h.d.Status(ctx)
	if st.BackendState != localapi.StateNeedsLogin || st.Coord.Connected || !strings.Contains(st.Coord.LastError, "connection refused") || st.Coord.NextRetry == "" {
		t.Fatalf("status after failed up = %+v", st)
	}

	// Coord comes back: the retry registers and the node runs.
	coord.setRegErr(nil)
	go func() { <-coord.mapReqs; coord.open(self) }()
	waitFor(t, "joined after retry", func() bool { return h.d.Status(ctx).BackendState == localapi.StateRunning })
	if n := coord.registerCount(); n < 2 {
		t.Fatalf("registrations = %d, want a retry", n)
	}
	if st := h.d.Status(ctx); st.Coord.LastError != "" || !st.Coord.Connected {
		t.Fatalf("coord status after retry = %+v", st.Coord)
	}
	if strings.Contains(h.logs.String(), testSecret) {
		t.Fatal("logs leak the auth key (S11)")
	}
}

// A refusal (4xx) is final: no retries, and status shows coord's reason.
func TestUpRefusalIsFinalAndShown(t *testing.T) {
	coord := newFakeCoord(node(1, "a"))
	msg := "auth key already used"
	coord.setRegErr(&controlclient.StatusError{Code: 403, Message: msg})
	h := newHarness(t, t.TempDir(), coord)
	_, err := h.d.Up(context.Background(), localapi.UpRequest{LoginServer: "https://198.18.0.2", AuthKey: testAuthKey, Timeout: 5 * time.Second})
	var le *localapi.Error
	if !errors.As(err, &le) || le.Code != 403 || le.Msg != msg {
		t.Fatalf("Up = %#v", err)
	}
	st := h.d.Status(context.Background())
	if st.Coord.LastError != msg || st.Coord.NextRetry != "" || st.Coord.Connected {
		t.Fatalf("coord status = %+v", st.Coord)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := coord.registerCount(); n != 1 {
		t.Fatalf("refused registration retried: %d attempts", n)
	}
}

// A coord that swallows packets: `up` times out naming it, and status
// says why there is no netmap even while the first attempt is in flight.
func TestUpTimeoutLeavesReasonInStatus(t *testing.T) {
	coord := newFakeCoord(node(1, "a"))
	block := make(chan struct{})
	defer close(block)
	h := newHarness(t, t.TempDir(), coord)
	h.d.newControl = func(controlclient.Options) (Control, error) { return blockingCoord{coord, block}, nil }
	_, err := h.d.Up(context.Background(), localapi.UpRequest{LoginServer: "https://198.18.0.99", AuthKey: testAuthKey, Timeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "198.18.0.99") {
		t.Fatalf("Up = %v", err)
	}
	if st := h.d.Status(context.Background()); !strings.Contains(st.Coord.LastError, "198.18.0.99") {
		t.Fatalf("status last_error = %q", st.Coord.LastError)
	}
}

type blockingCoord struct {
	*fakeCoord
	block chan struct{}
}

func (b blockingCoord) Register(ctx context.Context, _ wire.RegisterRequest) (wire.RegisterResponse, error) {
	select {
	case <-ctx.Done():
		return wire.RegisterResponse{}, ctx.Err()
	case <-b.block:
		return wire.RegisterResponse{}, errors.New("unblocked")
	}
}
