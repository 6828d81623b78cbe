package broker

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Session is one client connection as the broker sees it: its
// subscriptions and its bounded outbound queue. The transport reads
// commands into it and writes the outbox to the socket.
type Session struct {
	b   *Broker
	out *Outbox

	// mu guards subs, perms and closed, and orders a subscription's
	// registration in the hubs with Close. Lock order: Session.mu, then a
	// shard's mu.
	mu     sync.Mutex
	subs   map[string]*subscription
	perms  Permissions // nil: everything allowed
	closed bool
	// patternSegments sums the segments of the session's wildcard
	// patterns, bounded by Config.MaxSessionPatternSegments.
	patternSegments int

	// id, user and info name the session for presence and join/leave;
	// set once, before its first subscribe.
	id, user string
	info     json.RawMessage

	// enc is the encoding of the session's frames (NewSessionEncoded).
	enc Encoding
}

// SetIdentity names the session: its id, its user ("" when anonymous) and
// the user's info (a JSON object, or nil), which the subscription
// observer reports. Call it before the session's first subscribe.
func (s *Session) SetIdentity(id, user string, info json.RawMessage) {
	s.id, s.user, s.info = id, user, info
}

// ID returns the session's id (see SetIdentity).
func (s *Session) ID() string { return s.id }

// User returns the session's user (see SetIdentity).
func (s *Session) User() string { return s.user }

// UserInfo returns the session's user info (see SetIdentity).
func (s *Session) UserInfo() json.RawMessage { return s.info }

// Subscriptions returns the session's topics and patterns, sorted, at
// most limit of them, and how many it has.
func (s *Session) Subscriptions(limit int) ([]string, int) {
	s.mu.Lock()
	out := make([]string, 0, len(s.subs))
	for p := range s.subs {
		out = append(out, p)
	}
	s.mu.Unlock()
	slices.Sort(out)
	return out[:min(len(out), limit)], len(out)
}

// subscription is one session's interest in a topic or pattern. It starts
// pending: deliveries are buffered while the subscribe answer and any
// history replay are queued. An exact subscription then catches up: the
// relay may still deliver offsets that the subscribe already queued, and
// those are dropped, until the first delivery past them turns it live.
// Live, deliveries go straight to the outbox.
type subscription struct {
	sess     *Session
	pattern  string
	wildcard bool
	// state is subPending, subCatchingUp or subLive.
	state atomic.Int32
	// index is the subscription's place in its hub; guarded by the shard's mu.
	index int

	// mu guards pending, the switch from pending, watched and removed.
	mu       sync.Mutex
	pending  []pendingFrame
	watched  bool // the relay was asked to carry pattern for this subscription
	removed  bool // the subscription left the hubs
	observed bool // the observer was told of it (exact topics)

	// epoch and last are an exact subscription's position while it
	// catches up: what the subscribe queued (answer, replay and buffered
	// deliveries), or the last reset. activate sets them before the
	// subscription leaves subPending; after that only deliveries touch
	// them, and the store makes a topic's deliveries one at a time.
	epoch string
	last  uint64
}

// Subscription states.
const (
	// subPending: deliveries are buffered while the subscribe is answered.
	subPending int32 = iota
	// subCatchingUp: deliveries the subscribe already covered are dropped.
	subCatchingUp
	// subLive: every delivery is queued; the relay orders them.
	subLive
)

// segments is what the subscription counts against its session's
// MaxSessionPatternSegments: its pattern's segments if it is a wildcard.
func (sub *subscription) segments() int {
	if !sub.wildcard {
		return 0
	}
	return strings.Count(sub.pattern, ".") + 1
}

// pendingFrame is a delivery held back while a subscription is pending.
type pendingFrame struct {
	// head, frame and tail are the frame's parts (see Outbox.pushParts);
	// head and tail are nil for a frame in one piece. charge is what it
	// counts against the node's outbound budget.
	head, frame, tail []byte
	charge            int
	epoch             string
	offset            uint64
	// at is when the message was accepted (Unix ns; 0 for other frames).
	at int64
	// reset marks a reset notice: it always passes, and the stream
	// continues after its offset.
	reset bool
}

// NewSession opens a session with an empty outbox bounded by the broker's
// queue limits.
func (b *Broker) NewSession() *Session {
	b.stats.sessions.Add(1)
	out := NewOutbox(b.cfg.QueueSize, b.cfg.QueueBytes, func() { b.stats.slowConsumers.Add(1) })
	out.budget = b.budget
	return &Session{
		b:    b,
		out:  out,
		subs: make(map[string]*subscription),
	}
}

// Outbox returns the session's outbound queue.
func (s *Session) Outbox() *Outbox { return s.out }

// Send queues a reply frame. It returns false when the queue is full or
// the session is closed.
func (s *Session) Send(frame []byte) bool { return s.out.Push(frame) }

// Subscribe subscribes the session to pattern, an exact topic or a
// wildcard pattern. On success the `subscribed` answer (carrying ref) is
// queued, followed, when since is given, by the history after since, and
// then the live stream; nothing is lost or repeated in between. On error
// nothing is queued.
func (s *Session) Subscribe(ctx context.Context, ref, pattern string, since *Position) error {
	return s.subscribe(ctx, ref, pattern, since, true)
}

// ServerSubscribe subscribes the session as Subscribe does, for the
// server API: the answer has no ref and the session's permissions are
// not consulted (a later refresh that does not allow the topic ends it).
func (s *Session) ServerSubscribe(ctx context.Context, pattern string, since *Position) error {
	return s.subscribe(ctx, "", pattern, since, false)
}

func (s *Session) subscribe(ctx context.Context, ref, pattern string, since *Position, checkPerms bool) error {
	wildcard, err := ValidatePattern(pattern)
	if err != nil {
		return err
	}
	if wildcard && since != nil {
		return ErrSinceOnWildcard
	}
	segments := 0
	if wildcard {
		segments = strings.Count(pattern, ".") + 1
		if segments > s.b.cfg.MaxPatternSegments {
			return NewError(ErrInvalidTopic, "topic is invalid: a wildcard pattern has at most %d segments", s.b.cfg.MaxPatternSegments)
		}
	}
	sub := &subscription{sess: s, pattern: pattern, wildcard: wildcard}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrSessionClosed
	}
	if checkPerms && s.perms != nil && !s.perms.AllowSubscribe(pattern) {
		s.mu.Unlock()
		return NewError(ErrForbidden, "forbidden: may not subscribe to %s", pattern)
	}
	if _, dup := s.subs[pattern]; dup {
		s.mu.Unlock()
		return NewError(ErrAlreadySubscribed, "already subscribed to %s", pattern)
	}
	if limit := int(s.b.maxSubs.Load()); len(s.subs) >= limit {
		s.mu.Unlock()
		return NewError(ErrTooManySubscriptions, "too many subscriptions: a session may hold %d", limit)
	}
	if s.patternSegments+segments > s.b.cfg.MaxSessionPatternSegments {
		s.mu.Unlock()
		return NewError(ErrTooManySubscriptions, "too many subscriptions: a session's wildcard patterns may have %d segments in all", s.b.cfg.MaxSessionPatternSegments)
	}
	// Registered under mu so that a concurrent Close either sees the
	// subscription in the hub or refuses it above. The live stream is
	// buffered from here on; history is read after.
	if err := s.b.add(sub); err != nil {
		s.mu.Unlock()
		s.b.stats.patternRefusals.Add(1)
		return err
	}
	s.subs[pattern] = sub
	s.patternSegments += segments
	s.mu.Unlock()

	if err := s.b.watch(ctx, sub); err != nil {
		s.drop(sub)
		if errors.Is(err, ErrSessionClosed) {
			return err
		}
		return WrapError(ErrUnavailable, err)
	}
	if wildcard {
		sub.activate(s.encoder().Subscribed(ref, pattern, nil, false), nil, nil, 0)
		return nil
	}

	var (
		pos       Position
		replay    []*Message
		recovered bool
	)
	if since != nil && !s.b.topicOptions(pattern).NoRecovery {
		replay, pos, recovered, err = s.b.store.Since(ctx, pattern, *since)
	} else {
		pos, err = s.b.store.Position(ctx, pattern)
	}
	if err != nil {
		s.drop(sub)
		return WrapError(ErrUnavailable, err)
	}
	last := pos.Offset
	if since != nil {
		if recovered {
			s.b.stats.outcomes.resumed[1].Add(1)
		} else {
			s.b.stats.outcomes.resumed[0].Add(1)
		}
	}
	if recovered {
		last = since.Offset
	}
	sub.activate(s.encoder().Subscribed(ref, pattern, &pos, recovered), &pos, replay, last)
	s.b.observe(sub)
	return nil
}

// activate queues the subscribe answer, then, for an exact topic, the
// replay after last and the buffered deliveries after that, each offset
// once; then it turns the subscription live. pos is the topic's position
// the answer reports (nil for a wildcard).
func (sub *subscription) activate(answer []byte, pos *Position, replay []*Message, last uint64) {
	s := sub.sess
	sub.mu.Lock()
	defer sub.mu.Unlock()
	s.Send(answer)
	if pos != nil {
		sub.epoch, sub.last = pos.Epoch, last
	}
	enc := s.encoder()
	for _, m := range replay {
		if sub.admit(pendingFrame{epoch: m.Epoch, offset: m.Offset}) {
			s.Send(enc.Message(m, ""))
			sub.last = m.Offset
		}
	}
	for _, p := range sub.pending {
		if sub.admit(p) {
			s.out.pushParts(p.head, p.frame, p.tail, p.at, p.charge)
			if !p.reset && !sub.wildcard {
				sub.last = p.offset
			}
		}
	}
	sub.pending = nil
	if sub.wildcard {
		sub.state.Store(subLive)
	} else {
		sub.state.Store(subCatchingUp)
	}
}

// admit reports whether p goes to the session while an exact
// subscription is pending or catching up (a wildcard one admits
// everything: the relay already orders and deduplicates each topic). It
// admits a message only past the subscription's position: the store may
// have answered the subscribe (its position or its replay) ahead of what
// the relay has delivered to this node, so late deliveries of offsets the
// client already has are dropped, as are messages of another epoch that no
// reset announced. A reset is admitted, and moves the position, unless it
// is stale: same epoch and not past the position.
func (sub *subscription) admit(p pendingFrame) bool {
	if sub.wildcard {
		return true
	}
	if p.reset {
		if p.epoch == sub.epoch && p.offset <= sub.last {
			return false
		}
		sub.epoch, sub.last = p.epoch, p.offset
		return true
	}
	return p.epoch == sub.epoch && p.offset > sub.last
}

// deliver queues frame to the subscription's session, or buffers it while
// the subscription is pending. at is when the message was accepted.
func (sub *subscription) deliver(frame []byte, charge int, epoch string, offset uint64, at int64, f *fanout) {
	if sub.state.Load() == subLive {
		// The hot path: nothing to buffer or check.
		sub.sess.out.pushFanout(nil, frame, nil, at, charge, f)
		return
	}
	sub.queue(pendingFrame{frame: frame, charge: charge, epoch: epoch, offset: offset, at: at})
}

// deliverParts is deliver for a frame in three parts, the middle one
// shared with other patterns' frames: wildcard subscriptions only.
func (sub *subscription) deliverParts(head, shared, tail []byte, charge int, epoch string, offset uint64, at int64, f *fanout) {
	if sub.state.Load() == subLive {
		sub.sess.out.pushFanout(head, shared, tail, at, charge, f)
		return
	}
	sub.queue(pendingFrame{head: head, frame: shared, tail: tail, charge: charge, epoch: epoch, offset: offset, at: at})
}

// reset queues a reset notice; the stream continues after pos.
func (sub *subscription) reset(frame []byte, pos Position) {
	sub.queue(pendingFrame{frame: frame, charge: len(frame) + entrySize, epoch: pos.Epoch, offset: pos.Offset, reset: true})
}

func (sub *subscription) queue(p pendingFrame) {
	switch sub.state.Load() {
	case subLive:
	case subCatchingUp:
		if !sub.admit(p) {
			return
		}
		if !p.reset {
			// Past what the subscribe queued: from here on the relay's
			// order is the subscription's.
			sub.state.Store(subLive)
		}
	default:
		sub.mu.Lock()
		if sub.state.Load() == subPending {
			if len(sub.pending) >= sub.sess.b.cfg.QueueSize {
				sub.mu.Unlock()
				sub.sess.out.Overflow()
				return
			}
			sub.pending = append(sub.pending, p)
			sub.mu.Unlock()
			return
		}
		sub.mu.Unlock()
		sub.queue(p)
		return
	}
	sub.sess.out.pushParts(p.head, p.frame, p.tail, p.at, p.charge)
}

// Unsubscribe removes the session's subscription to pattern.
func (s *Session) Unsubscribe(pattern string) error {
	s.mu.Lock()
	sub, ok := s.subs[pattern]
	if ok {
		delete(s.subs, pattern)
		s.patternSegments -= sub.segments()
	}
	s.mu.Unlock()
	if !ok {
		return NewError(ErrNotSubscribed, "not subscribed to %s", pattern)
	}
	s.b.remove(sub)
	return nil
}

// drop undoes a subscription whose subscribe failed, unless Close has
// already removed it.
func (s *Session) drop(sub *subscription) {
	s.mu.Lock()
	owned := s.subs[sub.pattern] == sub
	if owned {
		delete(s.subs, sub.pattern)
		s.patternSegments -= sub.segments()
	}
	s.mu.Unlock()
	if owned {
		s.b.remove(sub)
	}
}

// Close removes all of the session's subscriptions and closes its outbox.
// Frames already queued stay for the writer to flush. Close is idempotent.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		s.b.remove(sub)
	}
	s.out.Close()
	s.b.stats.sessions.Add(-1)
}
