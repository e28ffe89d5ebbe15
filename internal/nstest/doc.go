// Package nstest is for tests that build raw network namespaces by hand
// (data plane, firewall): unique names deleted when the test ends,
// commands that fail the test, and running Go code inside a namespace.
// Whole worlds with NAT boxes and real binaries are internal/testbed's job.
package nstest
