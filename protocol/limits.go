package protocol

// Limit bounds the limit of a list (a history, presence, sessions,
// topics): how many items the list gives when the request names no
// limit, and the largest limit it takes.
type Limit struct {
	// Default is the count of a request without a limit.
	Default int
	// Max is the largest limit a request may name.
	Max int
}

// The lists' limits. They are part of the protocol: change them only with
// docs/PROTOCOL.md.
var (
	// HistoryLimit bounds the `history` op and GET /v1/history.
	HistoryLimit = Limit{Default: 100, Max: 1000}
	// PresenceLimit bounds GET /v1/presence.
	PresenceLimit = Limit{Default: 100, Max: 1000}
	// SessionsLimit bounds GET /v1/sessions, and what each node answers
	// of it.
	SessionsLimit = Limit{Default: 100, Max: 1000}
	// TopicsLimit bounds GET /v1/topics (and its offset).
	TopicsLimit = Limit{Default: 100, Max: 10000}
)

// Of returns the count a request naming limit n gets: Default for 0, n
// from 1 to Max; false for any other n.
func (l Limit) Of(n int) (int, bool) {
	switch {
	case n == 0:
		return l.Default, true
	case n < 0 || n > l.Max:
		return 0, false
	}
	return n, true
}
