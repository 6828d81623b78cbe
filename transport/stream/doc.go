// Package stream is Tidings' HTTP streaming transport: a bidirectional
// session over plain HTTP requests, for networks that pass HTTP but block
// WebSocket upgrades. It carries exactly the frames and commands of a
// WebSocket session, run by the same session core (package session):
// permissions, command rate, resume, refresh, presence and history
// behave as they do on /v1/ws.
//
// # Opening: GET /v1/stream
//
// The token, when the node verifies tokens, travels in the `token` query
// parameter or an `Authorization: Bearer` header. The node's admission
// (transport/admit: Origin, bounds on sessions and per address, token,
// connect hook) refuses as it refuses a WebSocket upgrade, with the same
// JSON errors. An admitted request is answered 200 with
//
//	Content-Type: application/octet-stream
//	Cache-Control: no-cache, no-transform
//	X-Accel-Buffering: no
//	X-Content-Type-Options: nosniff
//	Tidings-Stream-Key: <32 hex digits>
//	Access-Control-Expose-Headers: Tidings-Stream-Key
//
// and a body that is a sequence of WebSocket frames (RFC 6455) exactly as
// a server sends them on a WebSocket: unmasked, FIN set, never
// compressed. Text frames (opcode 0x1) carry the JSON frames a WebSocket
// session would get, byte for byte, `welcome` first; an empty ping frame
// (opcode 0x9) comes every Heartbeat to keep proxies from closing an idle
// response (the client does not answer it); one close frame (opcode 0x8:
// a 2-byte code and a reason) ends the body, with the code a WebSocket
// session would close with: 1001 `server shutting down` on Shutdown,
// after everything queued before it; 1008 for a slow consumer or an
// expired or revoked token, or a client over its command rate; 4000–4999
// when the server API disconnects the session. A session whose client
// ends the GET ends with it (counted as 1006, as a dropped WebSocket).
//
// The key is a random 128-bit secret: the only credential of the POSTs
// that send the session's commands (its session id, which presence shows
// to others, is not accepted in its place).
//
// # Commands: POST /v1/stream/<key>
//
// The body is one JSON command, or a JSON array of commands, as a
// WebSocket client would send them in text messages: at most
// MaxBodySize bytes (default 64 KiB, inclusive; over it 413 `too_large`,
// nothing handled). A body that is not a JSON object or an array of JSON
// objects gets 400 `bad_request`, nothing handled. The commands are run
// in order, each as a WebSocket text message would be (a command with an
// unknown op gets an `error` frame, a command over the rate `error`
// `rate_limited`), and their answers come on the stream. The POST is
// answered 204 once they have been run; the POSTs of one session are run
// one after the other, in the order they arrive. An unknown key, or the
// key of a session that has ended, gets 404 `not_found` (the client then
// opens a new session and resumes); another method than POST 405, and a
// POST while the server shuts down 503.
//
// The client ends its session by ending the GET (aborting the request);
// there is no close command.
//
// # Encoding
//
// The frames of the broker's deliveries come from the broker's default
// encoder, which must be transport/ws's Encoder (a node's is): they are
// copied to the response as they are, the very bytes a WebSocket
// subscriber of the node gets.
package stream
