package protocol

import "encoding/json"

// Frame is a decoded server text frame (docs/PROTOCOL.md): the fields its
// type carries are set, the others are zero. It is also the shape of a
// message in a GET /v1/history answer.
type Frame struct {
	// Type is the frame's type: welcome, message, reset, subscribed,
	// unsubscribed, error, …
	Type string `json:"type"`
	// Session, Node, Heartbeat (seconds between pings) and User (the
	// token's sub) are the welcome's.
	Session   string  `json:"session"`
	Node      string  `json:"node"`
	Heartbeat float64 `json:"heartbeat"`
	User      string  `json:"user"`
	// Ref is the ref of the command the frame answers.
	Ref string `json:"ref"`
	// Topic is the frame's topic; Sub is the wildcard pattern a message
	// or reset came through, empty for an exact subscription.
	Topic string `json:"topic"`
	Sub   string `json:"sub"`
	// ID, Offset, Epoch, Time and Data are a message's.
	ID     string          `json:"id"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Time   string          `json:"time"`
	Data   json.RawMessage `json:"data"`
	// Recovered tells, in `subscribed`, whether the stream resumed with
	// no gap.
	Recovered bool `json:"recovered"`
	// Reason is a reset's reason.
	Reason string `json:"reason"`
	// Expires is a `refreshed` frame's: when the new token expires.
	Expires string `json:"expires"`
	// Code and Message are an error frame's.
	Code    string `json:"code"`
	Message string `json:"message"`
}
