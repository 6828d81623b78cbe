package broker

import (
	"sync"
	"sync/atomic"
	"time"
)

// Outbox is a session's bounded outbound queue of complete frames. Producers
// (deliveries and replies) never block: when a push would exceed the bounds
// the outbox marks itself overflowed and drops from then on, and the
// session's writer closes the session as a slow consumer.
type Outbox struct {
	maxFrames  int
	maxBytes   int
	onOverflow func()
	// budget, when set, is the node's outbound budget this outbox counts
	// its bytes against.
	budget *Budget

	// mu guards notify, frames, bytes, oldest, overflowed and closed.
	mu sync.Mutex
	// notify, when set, is called when a push finds the outbox empty and
	// on overflow.
	notify func()
	// frames holds the queued frames' parts, in order: a frame is one
	// part, or three (head, shared body, tail) for a delivery whose body
	// is shared by other patterns' frames; count is the number of frames.
	frames [][]byte
	count  int
	bytes  int
	// charged is what the queued frames count against budget.
	charged int
	// oldest is when the first message queued among frames (the one
	// that has waited longest) was accepted for publishing (Unix ns), 0
	// when frames hold none.
	oldest     int64
	overflowed bool
	closed     bool
}

// NewOutbox returns an outbox bounded by maxFrames frames and maxBytes
// bytes. onOverflow, if not nil, is called once when it first overflows.
func NewOutbox(maxFrames, maxBytes int, onOverflow func()) *Outbox {
	return &Outbox{
		maxFrames:  maxFrames,
		maxBytes:   maxBytes,
		onOverflow: onOverflow,
	}
}

// Push queues frame. It returns false, and queues nothing, when the outbox
// is closed or full; a full outbox is marked overflowed.
func (o *Outbox) Push(frame []byte) bool { return o.push(frame, 0) }

// push queues frame; at is when the message it carries was accepted for
// publishing (Unix ns), or 0 for a frame that is not a live message. The
// whole frame counts against the node's budget.
func (o *Outbox) push(frame []byte, at int64) bool {
	return o.pushParts(nil, frame, nil, at, len(frame)+entrySize)
}

// entrySize is what a queued part costs beside its bytes: its slice header.
const entrySize = 24

// pushParts queues the frame made of head, body and tail (head and tail
// may be empty), as push does. charge is what it counts against the
// node's budget: its share of bytes that other queues may share, which
// the caller knows, plus what is its own.
func (o *Outbox) pushParts(head, body, tail []byte, at int64, charge int) bool {
	return o.pushFanout(head, body, tail, at, charge, nil)
}

// fanout is one message's delivery to many queues: the node's budget is
// read once before the pushes and what they charged is added once after,
// so that a delivery to N sessions costs no shared write per session.
type fanout struct {
	// cap is what a queue must stay below to take more while the node is
	// over its budget (the average of the busy queues); 0 when it is not.
	cap int64
	// charged and busy are what the pushes added: bytes charged, and
	// queues that were empty.
	charged, busy int64
}

// pushFanout is pushParts for one queue of a fan-out f, whose budget
// check and accounting go through f; with a nil f, the push checks and
// counts against the budget itself.
func (o *Outbox) pushFanout(head, body, tail []byte, at int64, charge int, f *fanout) bool {
	n := len(head) + len(body) + len(tail)
	o.mu.Lock()
	if o.closed || o.overflowed {
		o.mu.Unlock()
		return false
	}
	var overBudget bool
	if f != nil {
		overBudget = f.cap > 0 && int64(o.charged+charge) >= f.cap
		if overBudget {
			o.budget.cuts.Add(1)
		}
	} else {
		overBudget = !o.budget.take(o.charged, charge)
	}
	if overBudget || o.count >= o.maxFrames || o.bytes+n > o.maxBytes {
		if !overBudget && f == nil {
			o.budget.untake(o.charged, charge)
		}
		o.mu.Unlock()
		o.Overflow()
		return false
	}
	if f != nil {
		if o.charged == 0 {
			f.busy++
		}
		f.charged += int64(charge)
	}
	o.charged += charge
	first := len(o.frames) == 0
	if len(head) > 0 {
		o.frames = append(o.frames, head)
	}
	o.frames = append(o.frames, body)
	if len(tail) > 0 {
		o.frames = append(o.frames, tail)
	}
	o.count++
	o.bytes += n
	if o.oldest == 0 {
		// The first message queued since the last drain has waited the
		// longest: the queue is FIFO.
		o.oldest = at
	}
	notify := o.notify
	o.mu.Unlock()
	if first && notify != nil {
		// Later pushes find the writer signalled and not yet drained.
		notify()
	}
	return true
}

// begin reads the budget for a fan-out.
func (b *Budget) begin(f *fanout) {
	*f = fanout{}
	if b == nil {
		return
	}
	used := b.used.Load()
	if used <= b.limit {
		return
	}
	f.cap = max(1, used/max(1, b.busy.Load()))
}

// end adds what a fan-out's pushes charged.
func (b *Budget) end(f *fanout) {
	if b == nil || f.charged == 0 {
		return
	}
	b.used.Add(f.charged)
	b.busy.Add(f.busy)
}

// Budget bounds the memory that the outboxes of a node hold together: each
// queued frame counts its own bytes and its share of the bytes it shares
// with other queues (a broadcast frame, encoded once, counts once in all).
// Over it, a push to a session whose queue counts at least the average of
// the sessions with queued frames fails and overflows that session, so
// the slowest consumers are cut first. The zero value is not usable: call
// NewBudget. A nil *Budget bounds nothing.
type Budget struct {
	limit int64
	// used is the bytes queued in every outbox; busy counts the outboxes
	// with bytes queued.
	used, busy atomic.Int64
	cuts       atomic.Uint64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Used returns the bytes queued in the outboxes that count against b.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Cuts returns how many sessions b cut.
func (b *Budget) Cuts() uint64 {
	if b == nil {
		return 0
	}
	return b.cuts.Load()
}

// take counts n more bytes for an outbox that holds had, or refuses them
// when the node is over its budget and the outbox among the fullest.
func (b *Budget) take(had, n int) bool {
	if b == nil {
		return true
	}
	if had == 0 {
		b.busy.Add(1)
	}
	used := b.used.Add(int64(n))
	if used > b.limit && int64(had+n)*b.busy.Load() >= used {
		b.used.Add(-int64(n))
		if had == 0 {
			b.busy.Add(-1)
		}
		b.cuts.Add(1)
		return false
	}
	return true
}

// untake gives back what take counted for an outbox that held had, when
// the push failed for another reason.
func (b *Budget) untake(had, n int) {
	if b == nil {
		return
	}
	b.used.Add(-int64(n))
	if had == 0 {
		b.busy.Add(-1)
	}
}

// release gives back the bytes of an outbox that held had and is now
// empty.
func (b *Budget) release(had int) {
	if b == nil || had == 0 {
		return
	}
	b.used.Add(-int64(had))
	b.busy.Add(-1)
}

// Overflow marks the outbox overflowed, as a push that does not fit does.
func (o *Outbox) Overflow() {
	o.mu.Lock()
	first := !o.overflowed && !o.closed
	o.overflowed = true
	notify := o.notify
	o.mu.Unlock()
	if first {
		if o.onOverflow != nil {
			o.onOverflow()
		}
		if notify != nil {
			notify()
		}
	}
}

// Notify sets fn to be called when a push finds the outbox empty (later
// pushes find it already signalled and not yet drained) and on overflow,
// from the goroutine that pushed: the session's writer then drains
// everything. fn must not block or push.
func (o *Outbox) Notify(fn func()) {
	o.mu.Lock()
	o.notify = fn
	o.mu.Unlock()
}

// Pending reports whether the outbox holds frames or has overflowed:
// whether its writer has work.
func (o *Outbox) Pending() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.frames) > 0 || o.overflowed
}

// Drain takes every queued frame, as byte slices to write in order (a
// delivery through a wildcard pattern is three: its frame header, the
// part shared with other patterns' frames, and its end), handing back
// spare (emptied) as the
// outbox's next buffer so the two slices alternate without allocating.
// overflowed reports whether the outbox overflowed.
func (o *Outbox) Drain(spare [][]byte) (frames [][]byte, overflowed bool) {
	frames, _, overflowed = o.DrainOldest(spare)
	return frames, overflowed
}

// DrainOldest is Drain that also returns when the longest-queued message
// among the frames was accepted for publishing (its Message.Time), or the
// zero time when they hold no live message (replies, replays, resets).
// The session writer measures delivery latency with it, once per batch.
func (o *Outbox) DrainOldest(spare [][]byte) (frames [][]byte, oldest time.Time, overflowed bool) {
	o.mu.Lock()
	if sameArray(spare, o.frames) {
		// spare is the slice the outbox fills (handed in twice): taking
		// it back would let the next pushes overwrite what is returned.
		spare = nil
	}
	clear(spare)
	frames = o.frames
	o.frames = spare[:0]
	if !o.closed {
		o.budget.release(o.charged)
	}
	o.bytes, o.count, o.charged = 0, 0, 0
	at := o.oldest
	o.oldest = 0
	overflowed = o.overflowed
	o.mu.Unlock()
	if at != 0 {
		oldest = time.Unix(0, at)
	}
	return frames, oldest, overflowed
}

// Overflowed reports whether the outbox has overflowed.
func (o *Outbox) Overflowed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.overflowed
}

// Close makes every later push fail. Queued frames stay for Drain, but no
// longer count against the node's budget.
func (o *Outbox) Close() {
	o.mu.Lock()
	if !o.closed {
		o.budget.release(o.charged)
	}
	o.closed = true
	o.mu.Unlock()
}

// sameArray reports whether a and b share their backing array.
func sameArray(a, b [][]byte) bool {
	return cap(a) > 0 && cap(b) > 0 && &a[:cap(a)][cap(a)-1] == &b[:cap(b)][cap(b)-1]
}
