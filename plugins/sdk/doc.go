// Package sdk is the contract between lanmesh-coord and its plugins, and
// everything a plugin author needs: the Go interface of each plugin kind
// (IdP, an identity provider, is the first), the handshake (magic cookie
// and protocol version), and Serve, which turns a plugin's main into a
// hashicorp/go-plugin server speaking gRPC to coord.
//
// A plugin is its own executable: coord starts it, talks gRPC to it over a
// local socket, and restarts it when it dies (plugins/host does that). A
// plugin logs with Logger(); its lines land in coord's log under the
// plugin's name. The protobuf definitions live in internal/pb with their
// generated code; plugin authors never touch them.
//
// Nothing here may be linked into the router binary cmd/lanmesh (gRPC and
// go-plugin are too big and link reflection-heavy code): only coord and
// plugin executables import this package. docs/plugins.md is the guide.
package sdk
