package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
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

// markReady lets Subscribe return.
func (s *Subscription) markReady() {
	if !s.readySent {
		s.readySent = true
		close(s.ready)
	}
}

// run keeps the subscription connected until it ends, then records why
// and closes the queue.
func (s *Subscription) run() {
	defer close(s.runDone)
	err := s.loop()
	s.mu.Lock()
	s.err, s.session, s.node = err, "", ""
	s.mu.Unlock()
	close(s.queue)
}

// loop connects and reconnects; it returns why it stopped.
func (s *Subscription) loop() error {
	attempt, refusals := 0, 0
	for {
		c, welcome, err := s.connect()
		if err == nil {
			refusals = 0
			up := time.Now()
			err = s.serve(c, welcome)
			c.close(ws.StatusNormalClosure, "")
			s.mu.Lock()
			s.session, s.node = "", ""
			s.mu.Unlock()
			if time.Since(up) >= stableAfter {
				attempt = 0
			}
		}
		if s.ctx.Err() != nil {
			return context.Cause(s.ctx)
		}
		if !s.readySent {
			return err // the first connection failed: Subscribe says so
		}
		var delay time.Duration
		var ce *CloseError
		var e *Error
		switch {
		case errors.As(err, &ce) && ce.Code >= 4500 && ce.Code <= 4999:
			return ce
		case errors.As(err, &ce) && ce.Code == int(ws.StatusGoingAway):
			delay = rand.N(s.opts.Backoff.GoingAway)
		case errors.As(err, &e) && refused(e):
			if refusals++; refusals >= maxRefusals {
				return e
			}
			fallthrough
		default:
			delay = jitter(s.opts.Backoff.Min, s.opts.Backoff.Max, attempt)
			attempt++
		}
		if e != nil && e.RetryAfter > delay {
			delay = e.RetryAfter
		}
		s.log.Info("tidings: disconnected, reconnecting", "err", err, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return context.Cause(s.ctx)
		case <-t.C:
		}
	}
}

// refused reports whether an upgrade refusal counts towards maxRefusals:
// the broker will not take this request as it is (401, 403, 404, …), as
// opposed to "not now" (408, 429, 5xx).
func refused(e *Error) bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout && e.Status != http.StatusTooManyRequests
}

// connect opens a connection and reads its welcome. The connection is
// closed when the subscription's context is done.
func (s *Subscription) connect() (*conn, wireFrame, error) {
	token := s.c.cfg.Token
	if f := s.c.cfg.TokenFunc; f != nil {
		t, err := f(s.ctx)
		if err != nil {
			return nil, wireFrame{}, &Error{Code: CodeUnauthorized, Message: "Config.TokenFunc: " + err.Error(), err: err}
		}
		token = t
	}
	u := s.c.wsURL
	if token != "" {
		u += "?token=" + url.QueryEscape(token)
	}
	c, err := dial(s.ctx, u, s.c.tlsConfig())
	if err != nil {
		return nil, wireFrame{}, err
	}
	stop := context.AfterFunc(s.ctx, func() { c.close(ws.StatusNormalClosure, "") })
	c.stopWatch = stop
	msg, err := c.readMessage(dialTimeout)
	var f wireFrame
	if err == nil {
		err = json.Unmarshal(msg, &f)
		if err == nil && f.Type != "welcome" {
			err = fmt.Errorf("the first frame is %.100s, not a welcome", msg)
		}
	}
	if err != nil {
		stop()
		c.close(ws.StatusNormalClosure, "")
		if errors.Is(err, errIdle) {
			err = errors.New("no welcome frame in time")
		}
		var ce *CloseError
		if errors.As(err, &ce) {
			return nil, wireFrame{}, ce
		}
		return nil, wireFrame{}, &Error{Code: CodeUnavailable, Message: "connecting: " + err.Error(), err: err}
	}
	return c, f, nil
}

// tlsConfig is the TLS configuration of Config.HTTPClient's transport,
// nil for the default.
func (c *Client) tlsConfig() *tls.Config {
	if t, ok := c.hc.Transport.(*http.Transport); ok {
		return t.TLSClientConfig
	}
	return nil
}

// errHeartbeat ends a connection on which nothing arrived for two
// heartbeats.
var errHeartbeat = errors.New("no frame from the broker for two heartbeats")

// serve runs one connection: it subscribes every pattern, then reads
// and handles frames until the connection ends.
func (s *Subscription) serve(c *conn, w wireFrame) error {
	defer c.stopWatch()
	s.mu.Lock()
	s.session, s.node = w.Session, w.Node
	s.mu.Unlock()
	s.log.Debug("tidings: connected", "session", w.Session, "node", w.Node)
	s.refs = make(map[string]string)
	for _, p := range s.pats {
		p.state = idle
	}
	for _, name := range s.order {
		if err := s.subscribe(c, s.pats[name]); err != nil {
			return err
		}
	}
	s.checkReady()
	beat := time.Duration(w.Heartbeat * float64(time.Second))
	if beat <= 0 {
		beat = idleDefault
	}
	pinged := false
	for {
		msg, err := c.readMessage(beat)
		if errors.Is(err, errIdle) {
			// Silence for a heartbeat: ping; silence for two: dead.
			if pinged {
				c.close(4001, "heartbeat timeout")
				return errHeartbeat
			}
			pinged = true
			if err := c.send(command{Op: "ping"}); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		pinged = false
		if err := s.handle(c, msg); err != nil {
			return err
		}
	}
}

// command is a command to the broker.
type command struct {
	Op    string    `json:"op"`
	Topic string    `json:"topic,omitempty"`
	Ref   string    `json:"ref,omitempty"`
	Since *sincePos `json:"since,omitempty"`
}

type sincePos struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// subscribe sends p's subscribe command, with since for an exact topic
// whose position is known.
func (s *Subscription) subscribe(c *conn, p *pattern) error {
	s.nextRef++
	ref := "s" + strconv.FormatUint(s.nextRef, 10)
	cmd := command{Op: "subscribe", Topic: p.name, Ref: ref}
	if !p.wild && p.has {
		cmd.Since = &sincePos{Offset: p.pos.Offset, Epoch: p.pos.Epoch}
	}
	s.refs[ref] = p.name
	p.state = pending
	return c.send(cmd)
}

// checkReady lets Subscribe return once every pattern is active.
func (s *Subscription) checkReady() {
	if s.readySent {
		return
	}
	for _, p := range s.pats {
		if p.state != active {
			return
		}
	}
	s.markReady()
}

// errResubscribe ends a connection whose subscribe the broker could not
// serve for now (its store is down, say): the client reconnects with
// backoff and tries again.
type errResubscribe struct{ e *Error }

func (e errResubscribe) Error() string { return "resubscribing later: " + e.e.Error() }
func (e errResubscribe) Unwrap() error { return e.e }

// handle handles one frame from the broker.
func (s *Subscription) handle(c *conn, msg []byte) error {
	var f wireFrame
	if err := json.Unmarshal(msg, &f); err != nil {
		s.log.Warn("tidings: unreadable frame", "frame", string(msg[:min(len(msg), 200)]), "err", err)
		return nil
	}
	switch f.Type {
	case "message":
		return s.onMessage(f)
	case "reset":
		return s.onReset(f)
	case "subscribed":
		return s.onSubscribed(f)
	case "unsubscribed":
		return s.onUnsubscribed(f)
	case "error":
		return s.onError(f)
	}
	return nil
}

func (s *Subscription) onMessage(f wireFrame) error {
	pos := Position{Offset: f.Offset, Epoch: f.Epoch}
	if f.Sub == "" {
		p := s.pats[f.Topic]
		if p == nil || p.wild || p.state != active {
			return nil
		}
		if p.has && p.pos.Epoch == f.Epoch {
			if f.Offset <= p.pos.Offset {
				return nil // delivered already
			}
			if f.Offset > p.pos.Offset+1 {
				s.log.Warn("tidings: offsets skipped without a reset", "topic", f.Topic, "after", p.pos.Offset, "got", f.Offset)
			}
		}
		p.pos, p.has = pos, true
	} else {
		p := s.pats[f.Sub]
		if p == nil || !p.wild || p.state != active {
			return nil
		}
		if ex := s.pats[f.Topic]; ex != nil && !ex.wild {
			return nil // the exact subscription delivers it
		}
		if old, ok := s.wpos[f.Topic]; ok && old.Epoch == f.Epoch && f.Offset <= old.Offset {
			return nil // delivered already, through another pattern
		}
		s.wpos[f.Topic] = pos
	}
	return s.enqueue(item{kind: itemDelivery, d: f.delivery()})
}

func (s *Subscription) onReset(f wireFrame) error {
	pos := Position{Offset: f.Offset, Epoch: f.Epoch}
	if f.Sub == "" {
		p := s.pats[f.Topic]
		if p == nil || p.wild || p.state != active || p.has && p.pos == pos {
			return nil
		}
		p.pos, p.has = pos, true
	} else {
		p := s.pats[f.Sub]
		if p == nil || !p.wild || p.state != active {
			return nil
		}
		if ex := s.pats[f.Topic]; ex != nil && !ex.wild {
			return nil // the exact subscription gets its own
		}
		if old, ok := s.wpos[f.Topic]; ok && old == pos {
			return nil // nothing missed: another pattern told already
		}
		s.wpos[f.Topic] = pos
	}
	return s.enqueue(item{kind: itemReset, reset: Reset{Topic: f.Topic, Sub: f.Sub, Offset: f.Offset, Epoch: f.Epoch, Reason: f.Reason}})
}

func (s *Subscription) onSubscribed(f wireFrame) error {
	var p *pattern
	if f.Ref == "" {
		// The broker subscribed the session itself: a channels claim, or
		// the server API. Adopt the topic.
		p = s.pats[f.Topic]
		if p == nil {
			s.log.Info("tidings: the broker subscribed the session", "topic", f.Topic)
			p = s.add(f.Topic)
		} else if p.state == active {
			return nil
		}
	} else {
		name, ok := s.refs[f.Ref]
		if !ok {
			return nil
		}
		delete(s.refs, f.Ref)
		if p = s.pats[name]; p == nil || p.state == active {
			return nil
		}
	}
	p.state = active
	var err error
	switch {
	case !p.wild && !f.Recovered:
		cur := Position{Offset: f.Offset, Epoch: f.Epoch}
		had, old := p.has, p.pos
		p.pos, p.has = cur, true
		if had && old != cur {
			err = s.enqueue(item{kind: itemReset, reset: Reset{Topic: p.name, Offset: cur.Offset, Epoch: cur.Epoch, Reason: ResetNotRecovered}})
		} else {
			err = s.enqueue(item{kind: itemPosition, topic: p.name, pos: cur})
		}
	case p.wild && p.seen:
		err = s.enqueue(item{kind: itemReset, reset: Reset{Topic: p.name, Sub: p.name, Reason: ResetResubscribed}})
	}
	p.seen = true
	s.checkReady()
	return err
}

func (s *Subscription) onUnsubscribed(f wireFrame) error {
	if f.Ref != "" {
		return nil // the client sends no unsubscribe
	}
	p := s.pats[f.Topic]
	if p == nil {
		return nil
	}
	s.drop(p)
	s.checkReady()
	return s.enqueue(item{kind: itemUnsubscribed, pattern: f.Topic,
		err: &Error{Code: CodeForbidden, Message: "the broker ended the subscription to " + f.Topic}})
}

func (s *Subscription) onError(f wireFrame) error {
	e := &Error{Code: f.Code, Message: f.Message}
	name, ok := s.refs[f.Ref]
	if !ok {
		s.log.Warn("tidings: error from the broker", "code", f.Code, "message", f.Message)
		return nil
	}
	delete(s.refs, f.Ref)
	p := s.pats[name]
	if p == nil || p.state == active {
		return nil // e.g. `already subscribed` to one of the token's channels
	}
	if !s.readySent {
		return fmt.Errorf("subscribe %s: %w", name, e)
	}
	switch f.Code {
	case CodeUnavailable, CodeRateLimited, CodeInternal:
		return errResubscribe{e}
	}
	s.drop(p)
	return s.enqueue(item{kind: itemUnsubscribed, pattern: name, err: e})
}

// enqueue hands it to the pump, waiting while the queue is full
// (backpressure). A full queue before Subscribe has returned lets it
// return, since nobody can read C before.
func (s *Subscription) enqueue(it item) error {
	select {
	case s.queue <- it:
		return nil
	default:
	}
	s.markReady()
	select {
	case s.queue <- it:
		return nil
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	}
}

// pump hands deliveries to the application, records the positions it
// took, and runs the callbacks, in stream order. It closes C at the end.
func (s *Subscription) pump() {
	defer func() {
		<-s.runDone // Err is set before C closes
		close(s.out)
		s.cancel(nil)
		close(s.pumpDone)
	}()
	for {
		var it item
		var ok bool
		select {
		case <-s.ctx.Done():
			return
		case it, ok = <-s.queue:
			if !ok {
				return
			}
		}
		switch it.kind {
		case itemDelivery:
			// The position is recorded first, so that the reader of C
			// finds it in Positions as soon as it has the delivery.
			prev, had := s.setDelivered(it.d.Topic, it.d.Position())
			select {
			case s.out <- it.d:
			case <-s.ctx.Done():
				s.mu.Lock()
				if had {
					s.delivered[it.d.Topic] = prev
				} else {
					delete(s.delivered, it.d.Topic)
				}
				s.mu.Unlock()
				return
			}
		case itemPosition:
			s.setDelivered(it.topic, it.pos)
		case itemReset:
			r := it.reset
			if r.Reason != ResetResubscribed {
				s.setDelivered(r.Topic, Position{Offset: r.Offset, Epoch: r.Epoch})
			}
			s.log.Info("tidings: stream reset", "topic", r.Topic, "sub", r.Sub, "reason", r.Reason, "offset", r.Offset, "epoch", r.Epoch)
			if f := s.opts.OnReset; f != nil {
				s.callback(func() { f(r) })
			}
		case itemUnsubscribed:
			s.log.Warn("tidings: subscription ended by the broker", "pattern", it.pattern, "err", it.err)
			if f := s.opts.OnUnsubscribed; f != nil {
				s.callback(func() { f(it.pattern, it.err) })
			}
		}
	}
}

func (s *Subscription) callback(f func()) {
	s.inCallback.Store(true)
	defer s.inCallback.Store(false)
	f()
}

// setDelivered records topic's position and returns the previous one.
func (s *Subscription) setDelivered(topic string, pos Position) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, had := s.delivered[topic]
	s.delivered[topic] = pos
	return prev, had
}

// wireFrame is a frame from the broker; the fields its type has are set.
type wireFrame struct {
	Type      string          `json:"type"`
	Ref       string          `json:"ref"`
	Topic     string          `json:"topic"`
	Sub       string          `json:"sub"`
	ID        string          `json:"id"`
	Offset    uint64          `json:"offset"`
	Epoch     string          `json:"epoch"`
	Time      string          `json:"time"`
	Data      json.RawMessage `json:"data"`
	Recovered bool            `json:"recovered"`
	Reason    string          `json:"reason"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Session   string          `json:"session"`
	Node      string          `json:"node"`
	Heartbeat float64         `json:"heartbeat"`
}

// delivery returns a message frame (or history message) as a Delivery.
func (f wireFrame) delivery() Delivery {
	t, _ := time.Parse(time.RFC3339Nano, f.Time)
	return Delivery{Topic: f.Topic, ID: f.ID, Sub: f.Sub, Offset: f.Offset, Epoch: f.Epoch, Time: t, Data: f.Data}
}
