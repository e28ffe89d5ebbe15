package sdk

import (
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the version of the plugin protocol this SDK speaks.
// Coord refuses a plugin that speaks another one, naming both versions.
//
// History: 1 (2026-12-04) IdP kind: Configure, BeginLogin, CompleteLogin,
// Refresh, HTTP.
const ProtocolVersion = 1

// Handshake is what coord and a plugin check before anything else. The
// cookie only tells a plugin it was started by coord (run by hand, it says
// so and exits); it is not a secret.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "LANMESH_PLUGIN",
	MagicCookieValue: "d7c1a3e0-lanmesh-plugin",
}

// Kind is one kind of plugin: its name in the plugins config ("idp") and
// the go-plugin sets of each protocol version the host speaks.
type Kind struct {
	Name     string
	Versions map[int]goplugin.PluginSet
}

// IdPKind is the identity-provider kind.
var IdPKind = Kind{
	Name:     "idp",
	Versions: map[int]goplugin.PluginSet{ProtocolVersion: {"idp": &IdPPlugin{}}},
}

// ServeIdP runs impl as an IdP plugin; a plugin's main calls it and
// nothing else. It returns only when coord ends the plugin.
func ServeIdP(impl IdP) {
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{
			ProtocolVersion: {"idp": &IdPPlugin{Impl: impl}},
		},
		GRPCServer: goplugin.DefaultGRPCServer,
		Logger:     hclogJSON(os.Stderr),
	})
}

// Logger returns the logger a plugin should use: JSON lines on stderr in
// the shape go-plugin and coord understand, so each line shows up in
// coord's log at its level, tagged with the plugin's name. Never log
// secrets (tokens, passwords, cookies): coord's log keeps them.
func Logger() *slog.Logger { return NewLogger(stderr, slog.LevelDebug) }

// stderr is the process's real stderr, kept before go-plugin's Serve
// redirects os.Stderr into its gRPC stdio stream.
var stderr = os.Stderr

// NewLogger is Logger writing to w from level up.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.MessageKey:
				a.Key = "@message"
			case slog.LevelKey:
				a.Key = "@level"
				a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
			case slog.TimeKey:
				a.Key = "@timestamp"
				a.Value = slog.StringValue(a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			}
			return a
		},
	}))
}

// hclogJSON is go-plugin's own logger inside the plugin, in the same
// JSON line format as Logger.
func hclogJSON(w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: w, JSONFormat: true, Level: hclog.Info})
}
