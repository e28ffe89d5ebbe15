// Package controlclient is the node side of the control protocol: it signs
// requests with the machine key, registers, and reads the netmap stream.
// It knows nothing of the data plane; callers decide what a netmap means.
package controlclient
