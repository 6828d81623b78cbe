// Package store holds Tidings' relay and history backends: store/memory,
// the embedded single-node default, and the conformance suite in
// store/storetest that every backend must pass.
package store
