// Package store keeps coord's durable state (pre-auth keys, nodes,
// users, policies, settings) behind the Store interface; SQLite is the
// implementation today, Postgres can follow. It enforces the invariants
// that need a transaction (single-use keys, unique addresses, names and
// node keys); coord/store/storetest states them once as a contract
// suite every implementation runs.
package store
