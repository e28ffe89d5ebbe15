package host

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/lanmesh/lanmesh/plugins/sdk"
)

// IdP is an idp-kind plugin seen through its Instance: every call gets the
// plugin's deadline, fails with a clear message while the plugin is down,
// and counts towards hang detection.
type IdP struct{ in *Instance }

// IdPs returns the configured identity providers, sorted by name.
func (h *Host) IdPs() []IdP {
	var out []IdP
	for _, in := range h.Instances(sdk.IdPKind.Name) {
		out = append(out, IdP{in})
	}
	return out
}

// IdP returns one identity provider.
func (h *Host) IdP(name string) (IdP, bool) {
	in, ok := h.Get(sdk.IdPKind.Name, name)
	return IdP{in}, ok
}

// Name is the provider's name from the config.
func (p IdP) Name() string { return p.in.Name }

// Instance is the plugin behind p.
func (p IdP) Instance() *Instance { return p.in }

func (p IdP) call(ctx context.Context, what string, fn func(context.Context, *sdk.IdPClient) error) error {
	raw, err := p.in.client()
	if err != nil {
		return err
	}
	c := raw.(*sdk.IdPClient)
	ctx, cancel := context.WithTimeout(ctx, p.in.timeout)
	defer cancel()
	err = fn(ctx, c)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	p.in.called(err)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("plugin %s/%s: %s got no answer within %s: %w", p.in.Kind, p.in.Name, what, p.in.timeout, context.DeadlineExceeded)
		}
		return fmt.Errorf("plugin %s/%s: %s: %w", p.in.Kind, p.in.Name, what, err)
	}
	return nil
}

// BeginLogin calls the plugin's BeginLogin.
func (p IdP) BeginLogin(ctx context.Context, req sdk.BeginRequest) (resp sdk.BeginResponse, err error) {
	err = p.call(ctx, "BeginLogin", func(ctx context.Context, c *sdk.IdPClient) (err error) {
		resp, err = c.BeginLogin(ctx, req)
		return err
	})
	return resp, err
}

// CompleteLogin calls the plugin's CompleteLogin.
func (p IdP) CompleteLogin(ctx context.Context, req sdk.CompleteRequest) (id sdk.Identity, err error) {
	err = p.call(ctx, "CompleteLogin", func(ctx context.Context, c *sdk.IdPClient) (err error) {
		id, err = c.CompleteLogin(ctx, req)
		return err
	})
	return id, err
}

// Refresh calls the plugin's Refresh.
func (p IdP) Refresh(ctx context.Context, id sdk.Identity) (nid sdk.Identity, err error) {
	err = p.call(ctx, "Refresh", func(ctx context.Context, c *sdk.IdPClient) (err error) {
		nid, err = c.Refresh(ctx, id)
		return err
	})
	return nid, err
}

// HTTP forwards a browser request to the plugin's pages.
func (p IdP) HTTP(ctx context.Context, r *http.Request, pluginURL, path string) (resp sdk.HTTPResponse, err error) {
	err = p.call(ctx, "HTTP", func(ctx context.Context, c *sdk.IdPClient) (err error) {
		resp, err = c.HTTP(ctx, r, pluginURL, path)
		return err
	})
	return resp, err
}

// DisplayName is what the plugin calls itself, or its name.
func (p IdP) DisplayName() string {
	if n := p.in.Status().Info.DisplayName; n != "" {
		return n
	}
	return p.in.Name
}
