// Package importrules holds the test that enforces the import rules of the
// module's package table: broker depends on no transport, store, Redis client
// or OpenTelemetry SDK; only tracing and cmd/broker import the OpenTelemetry
// SDK and exporters; store and transport packages do not import each other.
// It has no code of its own; run it with `go test ./internal/importrules`.
package importrules
