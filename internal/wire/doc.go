// Package wire holds the control protocol between lanmesh agents and
// lanmesh-coord: request and response types, the signed envelope, the
// netmap stream framing and the auth key string. Both ends import it; a
// breaking change bumps ProtocolVersion.
package wire
