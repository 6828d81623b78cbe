package client

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of SubscribeOptions.
const (
	// DefaultBuffer is SubscribeOptions.Buffer's default.
	DefaultBuffer = 256
	// DefaultBackoffMin and DefaultBackoffMax are Backoff's defaults.
	DefaultBackoffMin = 250 * time.Millisecond
	DefaultBackoffMax = 10 * time.Second
	// DefaultGoingAway is Backoff.GoingAway's default.
	DefaultGoingAway = time.Second
)

const (
	// maxRefusals is how many refused upgrades in a row (HTTP 4xx other
	// than 408 and 429) end a subscription.
	maxRefusals = 3
	// stableAfter is how long a connection must have lasted for the
	// reconnect schedule to start again from Backoff.Min.
	stableAfter = 30 * time.Second
	// idleDefault stands for the heartbeat of a broker that sends none:
	// how long the client waits in silence before it pings.
	idleDefault = 30 * time.Second
)

// The reasons of a Reset.
const (
	// ResetHistoryLost: the broker's store lost the topic's history (for
	// example Redis restarted empty); the topic is in a new epoch.
	ResetHistoryLost = "history_lost"
	// ResetGap: the broker missed messages that history no longer holds.
	ResetGap = "gap"
	// ResetNotRecovered: a resume (after a reconnect, or from
	// SubscribeOptions.Since) could not be served from history: the
	// epoch changed or history no longer reaches the position.
	ResetNotRecovered = "not_recovered"
	// ResetResubscribed: a wildcard subscription was renewed after a
	// reconnect. Patterns cannot resume: messages published while the
	// client was away may be missing.
	ResetResubscribed = "resubscribed"
)

// Position is a place in a topic's stream: the last offset seen, in its
// epoch.
type Position struct {
	Offset uint64
	Epoch  string
}

// Delivery is one message received on a Subscription.
type Delivery struct {
	// Topic is the message's exact topic, ID its UUID.
	Topic, ID string
	// Sub is the wildcard pattern it came through; empty when it came
	// through a subscription to its exact topic.
	Sub string
	// Offset and Epoch are its position in the topic.
	Offset uint64
	Epoch  string
	// Time is when the broker accepted it.
	Time time.Time
	// Data is the published JSON value, byte for byte.
	Data json.RawMessage
}

// Position returns the delivery's position.
func (d Delivery) Position() Position { return Position{Offset: d.Offset, Epoch: d.Epoch} }

// Reset says that a topic's stream jumped: messages before the new
// position may be missing, and the application should reload its state.
type Reset struct {
	// Topic is the exact topic (for ResetResubscribed: the pattern).
	Topic string
	// Sub is the wildcard pattern it came through, empty for an exact
	// subscription.
	Sub string
	// Offset and Epoch are where the stream continues: the next message
	// has Offset+1 (zero for ResetResubscribed).
	Offset uint64
	Epoch  string
	// Reason is one of the Reset constants.
	Reason string
}

// Backoff is the reconnect schedule: attempt n waits a random time in
// [0, min(Max, Min·2ⁿ)) ("full jitter"), so that clients a deploy drops
// together do not come back together. The schedule starts again after a
// connection that lasted 30 s.
type Backoff struct {
	// Min and Max bound the schedule; zero means DefaultBackoffMin
	// (250 ms) and DefaultBackoffMax (10 s).
	Min, Max time.Duration
	// GoingAway bounds the random delay before reconnecting after the
	// broker closed with 1001 (a node shutting down), zero meaning
	// DefaultGoingAway (1 s).
	GoingAway time.Duration
}

// SubscribeOptions tune a Subscription.
type SubscribeOptions struct {
	// Since resumes exact topics after these positions (from
	// Subscription.Positions of an earlier run, or Published.Position):
	// what history still holds after them is delivered first. A position
	// for a topic that is not one of the patterns but matches a wildcard
	// among them only filters duplicates out.
	Since map[string]Position
	// OnReset, when set, is told when a topic's stream jumps (see
	// Reset); it is called in stream order, after the deliveries before
	// the jump have been received from C and before those after it.
	OnReset func(Reset)
	// OnUnsubscribed, when set, is told when the broker ends a
	// subscription after Subscribe returned: the server API's
	// unsubscribe (code forbidden, as a refreshed token that no longer
	// allows it would), or a subscription refused again after a
	// reconnect (the broker's error). The pattern is then dropped. It is
	// called in stream order, as OnReset.
	OnUnsubscribed func(pattern string, err error)
	// Buffer is how many deliveries may wait for the reader of C; zero
	// means DefaultBuffer (256).
	Buffer int
	// Backoff is the reconnect schedule.
	Backoff Backoff
}

// Subscription is a live subscription to one or more patterns, kept up
// across reconnects. Read C until it is closed, then Err says why.
type Subscription struct {
	c    *Client
	opts SubscribeOptions
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelCauseFunc

	queue    chan item     // run → pump
	out      chan Delivery // pump → the application
	ready    chan struct{} // closed once Subscribe may return
	runDone  chan struct{}
	pumpDone chan struct{}
	// inCallback is set while the pump runs OnReset or OnUnsubscribed,
	// so that Close called from them does not wait for the pump.
	inCallback atomic.Bool

	// The run goroutine's own state.
	pats      map[string]*pattern
	order     []string            // patterns, in subscribe order
	wpos      map[string]Position // last position of topics seen through wildcards
	refs      map[string]string   // ref of a subscribe in flight → pattern
	nextRef   uint64
	readySent bool
	// early holds what came before every pattern was accepted beyond
	// what queue had room for (see enqueue).
	early []item

	mu        sync.Mutex // guards the fields below
	delivered map[string]Position
	session   string
	node      string
	err       error
}

// pattern is one subscription on the wire.
type pattern struct {
	name  string
	wild  bool
	state int      // idle, pending or active
	seen  bool     // answered `subscribed` at least once
	pos   Position // exact topics: the last position received
	has   bool     // pos is set
}

const (
	idle = iota
	pending
	active
)

// item is what the run goroutine hands to the pump, in stream order.
type item struct {
	kind    int
	d       Delivery
	topic   string
	pos     Position
	reset   Reset
	pattern string
	err     error
}

const (
	itemDelivery = iota
	itemPosition
	itemReset
	itemUnsubscribed
)

// Subscribe opens a WebSocket session (GET /v1/ws, subprotocol pubsub.v1)
// and subscribes to each pattern: exact topics (`prices.eur.usd`) and
// wildcards (`prices.*.usd`, `prices.>`). It returns once the broker has
// accepted every pattern, or with the error of the first connection or
// of a refused pattern (an *Error: forbidden, bad_request, …). ctx bounds
// the whole subscription, not only the call.
//
// The subscription then lives until ctx is done, Close is called, or the
// broker tells the client to stop. It reconnects on its own with
// full-jitter backoff after any other disconnect: promptly (a small
// random delay) after a node's 1001 shutdown, with a fresh token from
// Config.TokenFunc each time (so after 1008 `token expired` too), and
// after 4000–4499 from the server API. It stops after a close with code
// 4500–4999 (Err is then a *CloseError) and after three refused upgrades
// in a row (HTTP 401, 403 or another 4xx; Err is then an *Error with its
// Status). It answers the broker's pings and pings an idle connection
// itself, and drops a connection silent for two heartbeats.
//
// Deliveries on C come in offset order per topic, each once, with no gap
// across reconnects: the client remembers the last position of every
// exact topic, resubscribes with `since` after a reconnect, and drops
// what it has already delivered. A jump it cannot repair (history lost or
// expired) is announced by OnReset before the next delivery of that
// topic. Wildcard subscriptions cannot resume: after a reconnect they
// continue with the live stream (Reset ResetResubscribed). A message
// whose topic matches several patterns is delivered once: through the
// exact topic when it is one of the patterns, otherwise through the first
// wildcard to bring it. The broker can also subscribe the session itself
// (a token's channels claim, ServerSubscribe): those topics are adopted,
// delivered on C and resumed as the others.
//
// Backpressure: when the application does not read C and Buffer
// deliveries are waiting, the client stops reading from the broker. The
// broker then cuts the session (a slow consumer's 1008, or silence for
// two heartbeats), and the client reconnects and resumes from history
// once C is read again. A consumer slower than the stream for longer
// than history lasts (100 messages or 5 minutes by default) gets a Reset.
// What the broker sends before it has accepted every pattern (the
// history of topics resumed with Since) is held in memory until
// Subscribe returns, beyond Buffer if need be: Subscribe returns only
// once every pattern is accepted, so a message published after it
// returns reaches every pattern.
func (c *Client) Subscribe(ctx context.Context, patterns []string, opts SubscribeOptions) (*Subscription, error) {
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	b := &opts.Backoff
	if b.Min <= 0 {
		b.Min = DefaultBackoffMin
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	b.Max = max(b.Max, b.Min)
	if b.GoingAway <= 0 {
		b.GoingAway = DefaultGoingAway
	}
	s := &Subscription{
		c: c, opts: opts, log: c.log,
		queue: make(chan item, opts.Buffer), out: make(chan Delivery),
		ready: make(chan struct{}), runDone: make(chan struct{}), pumpDone: make(chan struct{}),
		pats: make(map[string]*pattern), wpos: make(map[string]Position), delivered: make(map[string]Position),
	}
	for _, p := range patterns {
		if s.pats[p] == nil {
			s.add(p)
		}
	}
	for topic, pos := range opts.Since {
		if p := s.pats[topic]; p != nil && !p.wild {
			p.pos, p.has = pos, true
		} else {
			s.wpos[topic] = pos
		}
		s.delivered[topic] = pos
	}
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	go s.run()
	go s.pump()
	select {
	case <-s.ready:
		return s, nil
	case <-s.runDone:
		select {
		case <-s.ready:
			return s, nil
		default:
		}
		err := s.Err()
		s.cancel(err)
		<-s.pumpDone
		return nil, err
	}
}

// C returns the deliveries. It is closed when the subscription ends
// (then see Err). See Subscribe for the order and backpressure.
func (s *Subscription) C() <-chan Delivery { return s.out }

// Positions returns, per exact topic, the position of the last delivery
// handed to the reader of C (or where the topic's stream continues after
// a Reset, or the topic's position when it was first subscribed). Topics
// seen through wildcards are included. Called from the goroutine that
// reads C, it includes every delivery received; from another goroutine
// it may include the one being handed over. Pass it as
// SubscribeOptions.Since to resume in a later run.
func (s *Subscription) Positions() map[string]Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Position, len(s.delivered))
	for k, v := range s.delivered {
		out[k] = v
	}
	return out
}

// Session returns the id of the current WebSocket session ("" while
// disconnected), for the server API's Target.
func (s *Subscription) Session() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.session
}

// Node returns the id of the node the current session is on ("" while
// disconnected).
func (s *Subscription) Node() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node
}

// Close ends the subscription: it closes the connection (close code
// 1000) and C, and drops the deliveries not read yet. Err is then
// ErrClosed. It may be called more than once, and from OnReset or
// OnUnsubscribed.
func (s *Subscription) Close() error {
	s.cancel(ErrClosed)
	<-s.runDone
	if !s.inCallback.Load() {
		<-s.pumpDone
	}
	return nil
}

// Err returns why the subscription ended, once C is closed (nil before):
// ErrClosed after Close, the context's error when it is done, a
// *CloseError after a close code 4500–4999, or an *Error after three
// refused upgrades in a row.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// add adds a pattern to subscribe to.
func (s *Subscription) add(name string) *pattern {
	p := &pattern{name: name, wild: isPattern(name)}
	s.pats[name] = p
	s.order = append(s.order, name)
	return p
}

// drop forgets a pattern: it is not subscribed again.
func (s *Subscription) drop(p *pattern) {
	delete(s.pats, p.name)
	s.order = slices.DeleteFunc(s.order, func(n string) bool { return n == p.name })
}

// isPattern reports whether name has a wildcard segment.
func isPattern(name string) bool {
	for seg := range strings.SplitSeq(name, ".") {
		if seg == "*" || seg == ">" {
			return true
		}
	}
	return false
}

// markReady lets Subscribe return, then hands the pump the items held
// until then (see enqueue).
func (s *Subscription) markReady() error {
	if s.readySent {
		return nil
	}
	s.readySent = true
	close(s.ready)
	early := s.early
	s.early = nil
	for _, it := range early {
		if err := s.enqueue(it); err != nil {
			return err
		}
	}
	return nil
}
