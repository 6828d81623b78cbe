// Package e2e holds end-to-end tests of several broker nodes sharing a
// real Redis or Redis Cluster: cross-node delivery, one offset sequence,
// resume anywhere, and Redis faults.
package e2e
