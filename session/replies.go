package session

// The replies a session sends, as JSON objects; a transport frames them
// (Transport.Reply). Messages (AppendMessageStart), Subscribed and Reset
// are encoded by the transport's broker.Encoder, which the broker calls.
type (
	// Subscribed answers a subscribe.
	Subscribed struct {
		Type      string  `json:"type"`
		Ref       string  `json:"ref,omitempty"`
		Topic     string  `json:"topic"`
		Recovered bool    `json:"recovered"`
		Offset    *uint64 `json:"offset,omitempty"`
		Epoch     string  `json:"epoch,omitempty"`
	}
	// Reset tells that a subscription's stream continues after a gap.
	Reset struct {
		Type   string `json:"type"`
		Topic  string `json:"topic"`
		Sub    string `json:"sub,omitempty"`
		Epoch  string `json:"epoch"`
		Offset uint64 `json:"offset"`
		Reason string `json:"reason"`
	}
	// Welcome is the first frame of a session; User is the token's sub
	// (none for an anonymous session).
	Welcome struct {
		Type      string  `json:"type"`
		Session   string  `json:"session"`
		Node      string  `json:"node"`
		Heartbeat float64 `json:"heartbeat"`
		User      string  `json:"user,omitempty"`
	}
	// Pong answers a ping.
	Pong struct {
		Type string `json:"type"`
		Ref  string `json:"ref,omitempty"`
	}
	// Unsubscribed answers an unsubscribe, or (without ref) tells that a
	// refresh dropped a subscription.
	Unsubscribed struct {
		Type  string `json:"type"`
		Ref   string `json:"ref,omitempty"`
		Topic string `json:"topic"`
	}
	// Published answers a publish.
	Published struct {
		Type   string `json:"type"`
		Ref    string `json:"ref,omitempty"`
		ID     string `json:"id"`
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	// Refreshed answers a refresh.
	Refreshed struct {
		Type    string `json:"type"`
		Ref     string `json:"ref,omitempty"`
		Expires string `json:"expires"`
	}
	// Error answers a command that failed.
	Error struct {
		Type    string `json:"type"`
		Ref     string `json:"ref,omitempty"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}
)
