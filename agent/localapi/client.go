package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
)

// Client talks to the agent over its socket.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &Client{Socket: socket, hc: &http.Client{Transport: tr}}
}

// Status fetches the agent's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, PathStatus, nil, &st)
	return st, err
}

// Up joins or reconnects and waits for the first netmap.
func (c *Client) Up(ctx context.Context, req UpRequest) (UpResponse, error) {
	var resp UpResponse
	err := c.do(ctx, http.MethodPost, PathUp, req, &resp)
	return resp, err
}

// Down disconnects from the mesh.
func (c *Client) Down(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, PathDown, struct{}{}, nil)
}

// Ping sends one ICMP echo through the mesh.
func (c *Client) Ping(ctx context.Context, req PingRequest) (PingResponse, error) {
	var resp PingResponse
	err := c.do(ctx, http.MethodPost, PathPing, req, &resp)
	return resp, err
}

// maxRespBytes bounds answers; a status of thousands of peers fits.
const maxRespBytes = 32 << 20

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://local-lanmesh"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("cannot reach the lanmesh agent at %s: is `lanmesh agent` running?", c.Socket)
		}
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("cannot reach the lanmesh agent at %s: permission denied (run as root)", c.Socket)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("the lanmesh agent did not answer in time (%s)", path)
		}
		return fmt.Errorf("local API %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRespBytes))
	if err != nil {
		return fmt.Errorf("local API %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return &Error{Code: resp.StatusCode, Msg: e.Error}
		}
		return &Error{Code: resp.StatusCode, Msg: fmt.Sprintf("local API %s: HTTP %d", path, resp.StatusCode)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("local API %s: bad answer: %w", path, err)
	}
	return nil
}
