// Package store holds Tidings' relay and history backends: store/memory,
// the embedded single-node default; store/redis, which shares offsets and
// history across nodes and relays between them on a single Redis, Redis
// Cluster or Redis Sentinel; and the conformance suite in store/storetest
// that every backend must pass.
package store
