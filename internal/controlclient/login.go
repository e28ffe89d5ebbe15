package controlclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/lanmesh/lanmesh/internal/wire"
)

// Login asks coord for a login URL (interactive login through an IdP).
func (c *Client) Login(ctx context.Context, req wire.LoginRequest) (wire.LoginResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var out wire.LoginResponse
	if err := c.call(ctx, wire.PathLogin, req, &out); err != nil {
		return out, fmt.Errorf("login: %w", err)
	}
	return out, nil
}

// LoginWait waits up to wire.LoginWaitMax for the login to finish.
func (c *Client) LoginWait(ctx context.Context, id string) (wire.LoginWaitResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, wire.LoginWaitMax+requestTimeout)
	defer cancel()
	var out wire.LoginWaitResponse
	if err := c.call(ctx, wire.PathLoginWait, wire.LoginWaitRequest{ID: id}, &out); err != nil {
		return out, fmt.Errorf("login: %w", err)
	}
	return out, nil
}

// Logout expires this machine's node key on coord.
func (c *Client) Logout(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var out struct{}
	if err := c.call(ctx, wire.PathLogout, wire.LogoutRequest{}, &out); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	return nil
}

func (c *Client) call(ctx context.Context, path string, req, out any) error {
	resp, err := c.post(ctx, ctx, path, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, wire.MaxMapMessageBytes)).Decode(out); err != nil {
		return fmt.Errorf("bad answer: %w", err)
	}
	return nil
}
