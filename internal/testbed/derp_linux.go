package testbed

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// RelayIP is where AddRelayHost puts a standalone relay on the internet.
const RelayIP = "198.18.0.3"

// AddRelayHost attaches a host named name to the standard internet at ip
// (RelayIP for the first relay), with a default route, for lanmesh-derp.
func (s *Standard) AddRelayHost(name, ip string) (*Host, error) {
	h, err := s.World.AddHost(name)
	if err != nil {
		return nil, err
	}
	if err := s.onInternet(h, "eth0", ip, ""); err != nil {
		return nil, err
	}
	return h, nil
}

// Derp is a standalone lanmesh-derp on a testbed host.
type Derp struct {
	Host        *Host
	Proc        *Proc
	StateDir    string
	Listen      string // ip:443
	URL         string // https://ip:443/derp
	Fingerprint string // its certificate pin, for the DERP map
	bin         string
}

// PrepareDerp makes the relay's state (certificate for ip) with
// `lanmesh-derp fingerprint`, so its pin can go into coord's DERP map
// before the relay runs.
func PrepareDerp(ctx context.Context, h *Host, ip string) (*Derp, error) {
	bin, err := binary(func(b Binaries) string { return b.Derp })
	if err != nil {
		return nil, err
	}
	dir, err := h.w.StateDir("derp-" + h.Name)
	if err != nil {
		return nil, err
	}
	r, err := h.Run(ctx, bin, "fingerprint", "--state-dir", dir, "--hostname", ip)
	if err != nil {
		return nil, fmt.Errorf("lanmesh-derp fingerprint: %w", err)
	}
	listen := net.JoinHostPort(ip, "443")
	return &Derp{Host: h, StateDir: dir, Listen: listen, URL: "https://" + listen + "/derp",
		Fingerprint: strings.TrimSpace(r.Stdout), bin: bin}, nil
}

// DERPMap is a --derp-map file body with this relay as region id, STUN
// on 3478.
func (d *Derp) DERPMap(id int) string {
	ip, _, _ := net.SplitHostPort(d.Listen)
	m := map[string]any{"regions": []any{map[string]any{
		"id": id, "code": fmt.Sprintf("r%d", id), "name": "testbed relay",
		"nodes": []any{map[string]any{"name": fmt.Sprintf("r%da", id), "host_name": ip, "ipv4": ip,
			"derp_port": 443, "stun_port": 3478, "cert_fingerprint": d.Fingerprint}},
	}}}
	b, _ := json.Marshal(m)
	return string(b)
}

// Start runs `lanmesh-derp --listen ip:443 --stun-port 3478` plus args
// (--verify-url and the like) and waits until /healthz answers.
func (d *Derp) Start(ctx context.Context, args ...string) error {
	if d.Proc != nil && d.Proc.Running() {
		return errors.New("testbed: lanmesh-derp already running")
	}
	ip, _, _ := net.SplitHostPort(d.Listen)
	p, err := d.Host.Start("derp", append([]string{d.bin, "--listen", d.Listen, "--stun-port", "3478",
		"--state-dir", d.StateDir, "--hostname", ip}, args...)...)
	if err != nil {
		return err
	}
	d.Proc = p
	ctx, cancel := ctxOrTimeout(ctx, 20*time.Second)
	defer cancel()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext:       d.Host.DialContext,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // liveness only; nodes pin it
		DisableKeepAlives: true,
	}}
	var last error
	for {
		resp, err := client.Get("https://" + d.Listen + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		select {
		case <-p.Done():
			return fmt.Errorf("lanmesh-derp exited before it was healthy (%v); log %s:\n%s", p.Err(), p.LogPath, tail(p.Log(), 20))
		case <-ctx.Done():
			return fmt.Errorf("lanmesh-derp not healthy at %s: %v (log %s)", d.Listen, last, p.LogPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops the relay gracefully.
func (d *Derp) Stop() { d.Proc.Stop(3 * time.Second) }
