//go:build linux

package main

// tracker follows the offsets one session receives, per subscription and
// topic, and counts what is missing or repeated. A topic's messages must
// arrive in offset order, each once (PROTOCOL.md): a jump forward is a gap
// of the skipped offsets, an offset at or below the last one is a
// duplicate.
//
// The key of a stream is the topic for an exact subscription and
// pattern + "\x00" + topic for a delivery through a wildcard (a session
// subscribed to both a.b and a.* gets a.b's messages once per
// subscription). It is not safe for concurrent use.
type tracker struct {
	last map[string]*uint64 // pointers, so an update needs no map write
	key  []byte             // scratch, so that lookups do not allocate

	gaps uint64 // offsets skipped
	dups uint64 // offsets seen again
	msgs uint64 // messages observed
}

// streamKey returns the key of topic delivered through sub ("" for an
// exact subscription) in t's scratch buffer.
func (t *tracker) streamKey(sub, topic []byte) []byte {
	if len(sub) == 0 {
		return topic
	}
	t.key = append(append(append(t.key[:0], sub...), 0), topic...)
	return t.key
}

// start sets the position of a stream: the next message is offset+1.
// Used for `subscribed` (exact topics) and `reset` frames.
func (t *tracker) start(sub, topic []byte, offset uint64) {
	if t.last == nil {
		t.last = make(map[string]*uint64, 1)
	}
	k := t.streamKey(sub, topic)
	if p, ok := t.last[string(k)]; ok {
		*p = offset
		return
	}
	p := new(uint64)
	*p = offset
	t.last[string(k)] = p
}

// observe accounts one delivered message and returns the gap it reveals
// (0 when it is the next offset, or the stream's first message) and
// whether it is a duplicate.
func (t *tracker) observe(sub, topic []byte, offset uint64) (gap uint64, dup bool) {
	t.msgs++
	k := t.streamKey(sub, topic)
	p, ok := t.last[string(k)]
	if !ok {
		// The first message of a wildcard stream: nothing to compare to.
		t.start(sub, topic, offset)
		return 0, false
	}
	switch last := *p; {
	case offset == last+1:
		*p = offset
	case offset > last+1:
		gap = offset - last - 1
		t.gaps += gap
		*p = offset
	default:
		dup = true
		t.dups++
	}
	return gap, dup
}
