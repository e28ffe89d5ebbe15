// Package host runs plugin executables for lanmesh-coord: it reads the
// plugins config, starts each configured plugin from the plugins
// directory through hashicorp/go-plugin (gRPC, magic cookie, protocol
// version negotiation), and keeps it alive: health checks, restart with
// exponential backoff after a crash or a hang, a deadline on every call,
// and the plugin's stderr turned into lines of coord's slog log.
//
// Running plugins are kept in a registry keyed by kind and name, the way
// Caddy keeps modules: coord asks for "every idp" and never names one.
// Plugins get no environment from coord (its secrets stay out); their
// settings come only from the config. plugins/sdk is the contract.
package host
