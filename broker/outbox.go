package broker

import "sync"

// Outbox is a session's bounded outbound queue of complete frames. Producers
// (deliveries and replies) never block: when a push would exceed the bounds
// the outbox marks itself overflowed and drops from then on, and the
// session's writer closes the session as a slow consumer.
type Outbox struct {
	maxFrames  int
	maxBytes   int
	ready      chan struct{}
	onOverflow func()

	// mu guards frames, bytes, overflowed and closed.
	mu         sync.Mutex
	frames     [][]byte
	bytes      int
	overflowed bool
	closed     bool
}

// NewOutbox returns an outbox bounded by maxFrames frames and maxBytes
// bytes. onOverflow, if not nil, is called once when it first overflows.
func NewOutbox(maxFrames, maxBytes int, onOverflow func()) *Outbox {
	return &Outbox{
		maxFrames:  maxFrames,
		maxBytes:   maxBytes,
		ready:      make(chan struct{}, 1),
		onOverflow: onOverflow,
	}
}

// Push queues frame. It returns false, and queues nothing, when the outbox
// is closed or full; a full outbox is marked overflowed.
func (o *Outbox) Push(frame []byte) bool {
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
	o.frames = append(o.frames, frame)
	o.bytes += len(frame)
	o.mu.Unlock()
	o.signal()
	return true
}

func (o *Outbox) signal() {
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// Overflow marks the outbox overflowed, as a push that does not fit does.
func (o *Outbox) Overflow() {
	o.mu.Lock()
	first := !o.overflowed && !o.closed
	o.overflowed = true
	o.mu.Unlock()
	if first {
		if o.onOverflow != nil {
			o.onOverflow()
		}
		o.signal()
	}
}

// Ready is signalled after a push or an overflow; the writer then drains.
func (o *Outbox) Ready() <-chan struct{} { return o.ready }

// Drain takes every queued frame, handing back spare (emptied) as the
// outbox's next buffer so the two slices alternate without allocating.
// overflowed reports whether the outbox overflowed.
func (o *Outbox) Drain(spare [][]byte) (frames [][]byte, overflowed bool) {
	clear(spare)
	o.mu.Lock()
	frames = o.frames
	o.frames = spare[:0]
	o.bytes = 0
	overflowed = o.overflowed
	o.mu.Unlock()
	return frames, overflowed
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
