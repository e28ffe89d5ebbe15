// Command testplugin is an IdP plugin that misbehaves on request, for the
// host's tests: BeginLogin with state "crash" exits, with state "hang"
// never answers; named *-v2 it speaks protocol version 2.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/lanmesh/lanmesh/plugins/sdk"
)

type idp struct{}

func (idp) Configure(ctx context.Context, settings []byte) (sdk.Info, error) {
	var s struct {
		Fail    string `json:"fail"`
		Garbage bool   `json:"garbage"`
	}
	if err := json.Unmarshal(settings, &s); err != nil {
		return sdk.Info{}, err
	}
	if s.Fail != "" {
		return sdk.Info{}, fmt.Errorf("settings: %s", s.Fail)
	}
	if s.Garbage {
		// go-plugin's own parser panics on this line (S19-like: one
		// plugin's bad output must not take coord down).
		fmt.Fprintln(os.Stderr, `{"@message": 5, "@level": ["x"]}`)
		fmt.Fprintln(os.Stderr, "plain text line")
	}
	sdk.Logger().Info("configured", "pid", os.Getpid())
	return sdk.Info{DisplayName: "Test IdP"}, nil
}

func (idp) BeginLogin(ctx context.Context, req sdk.BeginRequest) (sdk.BeginResponse, error) {
	switch req.State {
	case "crash":
		os.Exit(3)
	case "hang":
		select {}
	}
	return sdk.BeginResponse{AuthURL: "https://idp.test/auth?state=" + url.QueryEscape(req.State), Session: []byte(req.Nonce)}, nil
}

func (idp) CompleteLogin(ctx context.Context, req sdk.CompleteRequest) (sdk.Identity, error) {
	if string(req.Session) != req.Nonce {
		return sdk.Identity{}, fmt.Errorf("%w: nonce mismatch", sdk.ErrBadCallback)
	}
	u := req.Query.Get("user")
	if u == "" {
		return sdk.Identity{}, fmt.Errorf("%w: no user", sdk.ErrRefused)
	}
	return sdk.Identity{Subject: u, Email: u + "@test", Groups: []string{"eng"}}, nil
}

func (idp) Refresh(ctx context.Context, id sdk.Identity) (sdk.Identity, error) {
	if id.Subject == "gone" {
		return sdk.Identity{}, sdk.ErrRefused
	}
	return id, nil
}

func main() {
	if strings.HasSuffix(filepath.Base(os.Args[0]), "-v2") {
		// A plugin built against a future SDK.
		hs := sdk.Handshake
		hs.ProtocolVersion = 2
		goplugin.Serve(&goplugin.ServeConfig{
			HandshakeConfig:  hs,
			VersionedPlugins: map[int]goplugin.PluginSet{2: {"idp": &sdk.IdPPlugin{Impl: idp{}}}},
			GRPCServer:       goplugin.DefaultGRPCServer,
		})
		return
	}
	sdk.ServeIdP(idp{})
}
