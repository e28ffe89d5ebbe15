// Package adminapi is coord's admin API over its unix socket: the JSON
// types both ends share and the client the lanmesh-coord CLI uses. The
// server side lives in coord/server.
package adminapi
