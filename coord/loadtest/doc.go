// Package loadtest measures coord at scale: an in-process coord on real SQLite, N registered nodes
// with real HTTPS map streams from lightweight clients, and the time from a policy change to the last
// affected stream's delta. It is a library for tests and benchmarks; it never leaves loopback.
package loadtest
