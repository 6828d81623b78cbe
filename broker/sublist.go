package broker

import (
	"strings"
	"sync"
	"sync/atomic"
)

// indexThreshold is the number of subscribers of one pattern above which the
// pattern keeps a position map next to its slice, so that inserting and
// removing one subscriber stays O(1) when thousands share a pattern (say,
// every browser on "prices.>"). Below it, a linear scan is cheaper.
const indexThreshold = 16

// patternIndex holds wildcard subscriptions in a trie of topic segments, like
// the sublist of nats-server: each edge is one segment, a literal, "*" or
// ">", and a node where a pattern ends holds that pattern's subscribers.
// Matching a topic walks its segments once, following at each node the
// literal edge, the "*" edge and the ">" edge, so its cost depends on the
// topic and on the patterns that share its prefixes, not on how many patterns
// there are. It can also hold exact patterns (no wildcard) and matches them.
//
// S identifies a subscriber (typically a session's subscription); a pattern
// holds each S at most once. The zero value is not usable: call
// newPatternIndex. All methods are safe for concurrent use.
type patternIndex[S comparable] struct {
	// mu guards root, every node reachable from it (their edges, patterns,
	// subscriber slices and position maps). match holds it for reading,
	// insert and remove for writing.
	mu   sync.RWMutex
	root *patternNode[S]
	// count is the number of patterns that have at least one subscriber;
	// written under mu, read without it so an empty index costs no lock.
	count atomic.Int64
	// nodes counts the trie's nodes but the root; written under mu.
	nodes atomic.Int64
	// maxNodes bounds nodes; 0 means no bound.
	maxNodes int64
}

// patternNode is one node of a patternIndex trie. The path from the root
// spells a pattern; subs holds the subscribers of that pattern, if any.
type patternNode[S comparable] struct {
	// The edges for literal segments: one is kept inline (oneSeg, one),
	// since most nodes of deep patterns have a single child, and more in
	// literal, which then holds all of them and one is nil.
	oneSeg  string
	one     *patternNode[S]
	literal map[string]*patternNode[S] // nil unless two or more literal edges
	star    *patternNode[S]            // edge for "*"
	tail    *patternNode[S]            // edge for ">"; a leaf by construction

	pattern string    // the full pattern ending here, set while subs is not empty
	subs    []S       // subscribers, in no particular order
	pos     map[S]int // index of each S in subs; built above indexThreshold subscribers, dropped at half of it
}

// newPatternIndex returns an empty index that holds at most maxNodes
// nodes (0: no bound).
func newPatternIndex[S comparable](maxNodes int) *patternIndex[S] {
	return &patternIndex[S]{root: &patternNode[S]{}, maxNodes: int64(maxNodes)}
}

// insert adds s under pattern, which the caller has validated with
// ValidatePattern. Inserting a (pattern, s) pair that is already present
// changes nothing. It returns true if this pattern was new, that is, had no
// subscriber before, and ErrNodeFull, inserting nothing, when the pattern
// needs more nodes than the index may still hold.
func (x *patternIndex[S]) insert(pattern string, s S) (bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.maxNodes > 0 && x.nodes.Load()+int64(x.root.missing(pattern)) > x.maxNodes {
		return false, ErrNodeFull
	}

	// p is the pattern the new nodes are keyed by: the caller's string
	// until a node must be created, then a private copy, so that a pattern
	// parsed out of a large frame does not keep the frame alive for the
	// subscription's lifetime. Inserting into an existing pattern does not
	// allocate (unless the slice grows).
	p, cloned := pattern, false
	n := x.root
	for start := 0; ; {
		seg, _, more := nextSegment(p[start:])
		c := n.lookup(seg)
		if c == nil {
			if !cloned {
				p, cloned = strings.Clone(pattern), true
				seg = p[start : start+len(seg)]
			}
			c = n.newChild(seg)
			x.nodes.Add(1)
		}
		n = c
		if !more {
			break
		}
		start += len(seg) + 1
	}
	if n.indexOf(s) >= 0 {
		return false, nil
	}
	isNew := len(n.subs) == 0
	if isNew {
		if !cloned {
			p = strings.Clone(pattern)
		}
		n.pattern = p
		x.count.Add(1)
	}
	n.subs = append(n.subs, s)
	if n.pos != nil {
		n.pos[s] = len(n.subs) - 1
	} else if len(n.subs) > indexThreshold {
		n.pos = make(map[S]int, len(n.subs))
		for i, v := range n.subs {
			n.pos[v] = i
		}
	}
	return isNew, nil
}

// missing counts the nodes pattern needs below n that do not exist yet.
func (n *patternNode[S]) missing(pattern string) int {
	segs := strings.Count(pattern, ".") + 1
	for rest, depth := pattern, 0; ; depth++ {
		seg, tail, more := nextSegment(rest)
		c := n.lookup(seg)
		if c == nil {
			return segs - depth
		}
		n = c
		if !more {
			return 0
		}
		rest = tail
	}
}

// remove deletes s from pattern and prunes the nodes left with neither
// subscribers nor children. It returns true if pattern now has no
// subscribers, including when it had none or s was not among them and no one
// else was.
func (x *patternIndex[S]) remove(pattern string, s S) bool {
	x.mu.Lock()
	defer x.mu.Unlock()

	empty, found := x.root.remove(pattern, s, &x.nodes)
	if found && empty {
		x.count.Add(-1)
	}
	return empty
}

// remove deletes s from the pattern spelled by rest below n, prunes the child
// it came through if that child became empty (counting it off nodes), and
// reports whether the pattern is left without subscribers and whether s was
// found.
func (n *patternNode[S]) remove(rest string, s S, nodes *atomic.Int64) (empty, found bool) {
	seg, tail, more := nextSegment(rest)
	c := n.lookup(seg)
	if c == nil {
		return true, false
	}
	if more {
		empty, found = c.remove(tail, s, nodes)
	} else {
		found = c.removeSub(s)
		empty = len(c.subs) == 0
	}
	if c.isEmpty() {
		n.unlink(seg)
		nodes.Add(-1)
	}
	return empty, found
}

// match calls fn once for every pattern in the index that matches topic, an
// exact topic valid for ValidateTopic, with the pattern and its current
// subscribers, in no particular order. Patterns with no subscriber are never
// reported.
//
// fn runs under the index's read lock: it must not block and must not call
// back into the index. subs is the index's own slice: fn must neither modify
// it nor keep it (or the pattern's position in it) after returning; copying
// out the elements is fine. match does not allocate.
func (x *patternIndex[S]) match(topic string, fn func(pattern string, subs []S)) {
	if topic == "" {
		return
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	x.root.match(topic, fn)
}

// match reports the patterns below n that match rest, the not yet matched
// (non-empty) segments of the topic.
func (n *patternNode[S]) match(rest string, fn func(pattern string, subs []S)) {
	// ">" matches one or more segments, and rest has at least one.
	if n.tail != nil {
		n.tail.emit(fn)
	}
	seg, tail, more := nextSegment(rest)
	if c := n.literalChild(seg); c != nil {
		if more {
			c.match(tail, fn)
		} else {
			c.emit(fn)
		}
	}
	if c := n.star; c != nil {
		if more {
			c.match(tail, fn)
		} else {
			c.emit(fn)
		}
	}
}

// emit reports n's pattern to fn if it has subscribers.
func (n *patternNode[S]) emit(fn func(pattern string, subs []S)) {
	if len(n.subs) > 0 {
		fn(n.pattern, n.subs)
	}
}

// len returns the number of distinct patterns that have at least one
// subscriber.
func (x *patternIndex[S]) len() int { return int(x.count.Load()) }

// size returns the number of nodes the index holds.
func (x *patternIndex[S]) size() int { return int(x.nodes.Load()) }

// nextSegment splits the first segment off rest: seg is the segment, tail the
// remainder after the '.', and more whether there is a remainder.
func nextSegment(rest string) (seg, tail string, more bool) {
	i := strings.IndexByte(rest, '.')
	if i < 0 {
		return rest, "", false
	}
	return rest[:i], rest[i+1:], true
}

// lookup returns the child of n along the edge seg, or nil.
func (n *patternNode[S]) lookup(seg string) *patternNode[S] {
	switch seg {
	case "*":
		return n.star
	case ">":
		return n.tail
	}
	return n.literalChild(seg)
}

// literalChild returns the child of n along the literal edge seg, or nil.
func (n *patternNode[S]) literalChild(seg string) *patternNode[S] {
	if n.one != nil {
		if n.oneSeg == seg {
			return n.one
		}
		return nil
	}
	return n.literal[seg] // a substring key does not allocate
}

// newChild adds and returns a new child of n along the edge seg, which n
// does not have yet.
func (n *patternNode[S]) newChild(seg string) *patternNode[S] {
	c := &patternNode[S]{}
	switch seg {
	case "*":
		n.star = c
	case ">":
		n.tail = c
	default:
		switch {
		case n.one == nil && n.literal == nil:
			n.oneSeg, n.one = seg, c
		case n.one != nil:
			n.literal = map[string]*patternNode[S]{n.oneSeg: n.one, seg: c}
			n.oneSeg, n.one = "", nil
		default:
			n.literal[seg] = c
		}
	}
	return c
}

// unlink removes the edge seg from n.
func (n *patternNode[S]) unlink(seg string) {
	switch seg {
	case "*":
		n.star = nil
	case ">":
		n.tail = nil
	default:
		if n.one != nil {
			n.oneSeg, n.one = "", nil
			return
		}
		delete(n.literal, seg)
		if len(n.literal) == 1 {
			for k, c := range n.literal {
				n.oneSeg, n.one = k, c
			}
			n.literal = nil
		}
	}
}

// isEmpty reports whether n has neither subscribers nor children, so that its
// parent may drop it.
func (n *patternNode[S]) isEmpty() bool {
	return len(n.subs) == 0 && n.one == nil && len(n.literal) == 0 && n.star == nil && n.tail == nil
}

// indexOf returns the position of s in n.subs, or -1.
func (n *patternNode[S]) indexOf(s S) int {
	if n.pos != nil {
		if i, ok := n.pos[s]; ok {
			return i
		}
		return -1
	}
	for i, v := range n.subs {
		if v == s {
			return i
		}
	}
	return -1
}

// removeSub swap-deletes s from n.subs and reports whether it was there.
func (n *patternNode[S]) removeSub(s S) bool {
	i := n.indexOf(s)
	if i < 0 {
		return false
	}
	last := len(n.subs) - 1
	moved := n.subs[last]
	n.subs[i] = moved
	var zero S
	n.subs[last] = zero // do not keep the removed subscriber reachable
	n.subs = n.subs[:last]
	if n.pos != nil {
		delete(n.pos, s)
		if i != last {
			n.pos[moved] = i
		}
		if len(n.subs) <= indexThreshold/2 {
			n.pos = nil // small again: scanning is cheaper than the map
		}
	}
	switch {
	case len(n.subs) == 0:
		n.subs = nil
		n.pattern = ""
	case cap(n.subs) > 64 && len(n.subs) < cap(n.subs)/4:
		// Give back the memory of a crowd that has left.
		n.subs = append(make([]S, 0, 2*len(n.subs)), n.subs...)
	}
	return true
}
