// Package importrules holds the test that enforces the module's import
// rules, the layering docs/ARCHITECTURE.md describes:
//
//   - broker depends on no transport, store, auth or limit package, and on
//     no Redis client or OpenTelemetry SDK or exporter;
//   - auth and limit depend on no transport or store package and on no
//     Redis client;
//   - session (what a session does on any transport) depends on no
//     transport or store package, no Redis client and no OpenTelemetry
//     SDK or exporter;
//   - only tracing and cmd/broker import the OpenTelemetry SDK and
//     exporters;
//   - internal/telemetry, which every package may use, imports the
//     OpenTelemetry API only: no package of the module, no SDK or
//     exporter, no Redis client;
//   - protocol, the wire's types (error codes, server frame, node
//     figures), imports the standard library only;
//   - control, the control plane's store contract, imports no package of
//     the module but protocol (control/node and the control/controltest
//     suite aside);
//   - control/node (a node's control plane) depends on no transport or
//     store package, no Redis client and no OpenTelemetry SDK or
//     exporter;
//   - store and transport packages do not import each other;
//   - transport/admit (the door of every transport's sessions) imports
//     no transport but clientip; transport/httpstream (the plumbing the
//     streamed transports share) imports no other transport; and the SSE
//     and HTTP-streaming transports import no other transport but admit,
//     clientip and httpstream: each reuses the session core, none copies
//     or imports the WebSocket transport;
//   - admin (the console: embedded assets and their handler) imports no
//     package of the module but internal/assets, no Redis client and no
//     OpenTelemetry SDK or exporter: it reaches the broker through the
//     server API only; internal/assets imports nothing of the module;
//   - client, the Go client, imports no package of the module but
//     protocol and internal/wsframe (capped frame reads, which imports no
//     package of the module), no Redis client and no OpenTelemetry; nor
//     does internal/wstest, the test client;
//   - config (read by the broker and the tidings CLI) imports no
//     transport, store, session, control, auth or limit package, no
//     Redis client and no OpenTelemetry SDK or exporter.
//
// It has no code of its own; run it with `go test ./internal/importrules`.
package importrules
