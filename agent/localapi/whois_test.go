package localapi

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

type whoisBackend struct {
	fakeBackend
	asked []netip.Addr
}

func (w *whoisBackend) WhoIs(_ context.Context, a netip.Addr) (WhoIsResponse, error) {
	w.asked = append(w.asked, a)
	if a != netip.MustParseAddr("100.64.0.2") {
		return WhoIsResponse{}, &Error{Code: http.StatusNotFound, Msg: "whois: no node holds " + a.String()}
	}
	return WhoIsResponse{Addr: a.String(), Node: WhoIsNode{ID: 2, Name: "router-b"}}, nil
}

func TestWhoIs(t *testing.T) {
	wb := &whoisBackend{}
	c, _ := start(t, wb)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.WhoIs(ctx, netip.MustParseAddr("100.64.0.2"))
	if err != nil || r.Node.Name != "router-b" {
		t.Fatalf("WhoIs = %+v, %v", r, err)
	}
	_, err = c.WhoIs(ctx, netip.MustParseAddr("100.64.0.9"))
	var e *Error
	if !errors.As(err, &e) || e.Code != http.StatusNotFound {
		t.Fatalf("WhoIs of an unknown address: %v", err)
	}
	// Services have "IP:port" at hand (RemoteAddr); a mapped or zoned
	// address is the plain one.
	for _, q := range []string{"100.64.0.2:443", "[::ffff:100.64.0.2]:443"} {
		if err := c.do(ctx, http.MethodGet, PathWhoIs+"?addr="+q, nil, &r); err != nil {
			t.Errorf("addr=%s: %v", q, err)
		}
	}
	if got := wb.asked[len(wb.asked)-1]; got != netip.MustParseAddr("100.64.0.2") {
		t.Errorf("a mapped address reached the backend as %v", got)
	}
	for _, q := range []string{"", "router-b", "100.64.0.2/32", "%zz"} {
		err := c.do(ctx, http.MethodGet, PathWhoIs+"?addr="+q, nil, &r)
		if !errors.As(err, &e) || e.Code != http.StatusBadRequest || !strings.Contains(e.Msg, "is not an IP address") {
			t.Errorf("addr=%q: %v", q, err)
		}
	}
}

// A backend without whois answers 404, not a panic.
func TestWhoIsUnsupported(t *testing.T) {
	c, _ := start(t, &fakeBackend{})
	_, err := c.WhoIs(context.Background(), netip.MustParseAddr("100.64.0.2"))
	var e *Error
	if !errors.As(err, &e) || e.Code != http.StatusNotFound {
		t.Fatalf("WhoIs on a backend without it: %v", err)
	}
}
