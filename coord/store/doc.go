// Package store keeps coord's durable state (pre-auth keys, nodes,
// settings) behind the Store interface; SQLite is the implementation today,
// Postgres can follow. It enforces invariants that need a transaction.
package store
