// Package chaos holds a Jepsen-style test of Tidings: three real broker
// processes on a real Redis (or a three-master Redis Cluster), publishers
// that retry with idempotency keys, a few hundred raw WebSocket
// subscribers that reconnect and resume, a seeded schedule of faults
// (SIGTERM and SIGKILL of nodes, Redis killed with and without its data,
// pub/sub connections killed, Redis paused, client connections cut), and a
// checker that proves the wire contract from every frame the subscribers
// received. The package has only tests; docs/CHAOS.md says how to run them
// and how to replay a failure from its seed.
package chaos
