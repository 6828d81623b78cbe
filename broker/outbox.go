package broker

import (
	"sync"
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

	// mu guards ready, notify, frames, bytes, oldest, overflowed and
	// closed.
	mu sync.Mutex
	// ready is made by the first Ready call; nil until then, so that a
	// session whose writer uses Notify holds no channel.
	ready chan struct{}
	// notify, when set, is called when a push finds the outbox empty and
	// on overflow.
	notify func()
	frames [][]byte
	bytes  int
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
// publishing (Unix ns), or 0 for a frame that is not a live message.
func (o *Outbox) push(frame []byte, at int64) bool {
	o.mu.Lock()
	if o.closed || o.overflowed {
		o.mu.Unlock()
		return false
	}
	if len(o.frames) >= o.maxFrames || o.bytes+len(frame) > o.maxBytes {
		o.mu.Unlock()
		o.Overflow()
		return false
	}
	first := len(o.frames) == 0
	o.frames = append(o.frames, frame)
	o.bytes += len(frame)
	if o.oldest == 0 {
		// The first message queued since the last drain has waited the
		// longest: the queue is FIFO.
		o.oldest = at
	}
	ready, notify := o.ready, o.notify
	o.mu.Unlock()
	if first {
		// Later pushes find the writer signalled and not yet drained.
		signal(ready, notify)
	}
	return true
}

func signal(ready chan struct{}, notify func()) {
	if notify != nil {
		notify()
	}
	if ready != nil {
		select {
		case ready <- struct{}{}:
		default:
		}
	}
}

// Overflow marks the outbox overflowed, as a push that does not fit does.
func (o *Outbox) Overflow() {
	o.mu.Lock()
	first := !o.overflowed && !o.closed
	o.overflowed = true
	ready, notify := o.ready, o.notify
	o.mu.Unlock()
	if first {
		if o.onOverflow != nil {
			o.onOverflow()
		}
		signal(ready, notify)
	}
}

// Ready is signalled when a push finds the outbox empty and on overflow;
// the writer then drains everything.
func (o *Outbox) Ready() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ready == nil {
		o.ready = make(chan struct{}, 1)
		if len(o.frames) > 0 || o.overflowed {
			o.ready <- struct{}{}
		}
	}
	return o.ready
}

// Notify sets fn to be called when a push finds the outbox empty (later
// pushes find it already signalled and not yet drained) and on overflow,
// from the goroutine that pushed: a writer started on demand uses it in
// place of Ready. fn must not block or push.
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

// Drain takes every queued frame, handing back spare (emptied) as the
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
	o.bytes = 0
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

// Len returns the number of queued frames.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.frames)
}

// Close makes every later push fail. Queued frames stay for Drain.
func (o *Outbox) Close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
}

// sameArray reports whether a and b share their backing array.
func sameArray(a, b [][]byte) bool {
	return cap(a) > 0 && cap(b) > 0 && &a[:cap(a)][cap(a)-1] == &b[:cap(b)][cap(b)-1]
}
