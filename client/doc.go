// Package client is the Go client of Tidings, a WebSocket pub/sub broker:
// it publishes over HTTP, subscribes over WebSocket with resume, and calls
// the server API. It speaks the wire protocol of docs/PROTOCOL.md and
// behaves as the browser client (web/tidings.js) does.
//
// # Publishing
//
// A backend needs three lines:
//
//	c, err := client.New(client.Config{URL: "https://broker.example.com", APIKey: key})
//	p, err := c.Publish(ctx, "orders.1842", order) // p.Offset, p.Epoch: where it was stored
//	if err != nil { … }
//
// Publish and PublishBatch send every message with an idempotency key
// (generated unless Message.IdempotencyKey is set) and retry after a
// network error, a 429 or a 502/503/504 with the same key, so that a
// retry never stores a message twice. data is any value json.Marshal
// accepts, or raw JSON (json.RawMessage, []byte) that subscribers receive
// byte for byte.
//
// # Subscribing
//
// Subscribe opens a WebSocket session and delivers the messages of exact
// topics and wildcard patterns (`prices.*.usd`, `prices.>`) on a channel,
// in offset order per topic, each once. It reconnects by itself with
// full-jitter backoff and resumes every exact topic from the last
// position it received, so that a dropped connection, a node shutting
// down (1001) or a server-side disconnect (4000–4499) loses and repeats
// nothing; a jump the broker cannot repair is reported through
// SubscribeOptions.OnReset. It stops for good after a close code from
// 4500 to 4999, after three refused upgrades in a row, when its context
// is done, or on Close; Err then says why.
//
// # Server API
//
// History, Presence, PresenceStats, Topics, Info, Disconnect,
// Unsubscribe, ServerSubscribe and Revoke call the broker's server API
// with an admin API key.
//
// # Errors
//
// The broker's refusals are *Error values with the protocol's code (the
// constants of package protocol: protocol.CodeForbidden,
// protocol.CodeUnavailable, …) and the HTTP status: test them with
// IsCode(err, protocol.CodeForbidden) or errors.Is(err, ErrForbidden).
package client
