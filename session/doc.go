// Package session is what a client's session does, whatever carries it:
// the command codec (DecodeCommand), the commands (subscribe,
// unsubscribe, publish, ping, refresh, history) within the session's
// permissions and command rate, its token's expiry, its publish spans,
// its server-side subscriptions, and the typed
// causes a session ends with (Cause). A transport (transport/ws) frames
// the session's replies and carries out its close through the Transport
// interface; it keeps the wire to itself.
package session
