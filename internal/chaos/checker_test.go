package chaos

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/tidings-io/tidings/internal/wstest"
)

// The checker proves the wire contract (docs/PROTOCOL.md) from what the
// subscribers received and what the publishers were told. Each subscriber
// feeds its own subChecker with every event of its sessions, in order, as
// they happen: a session opened, a subscribe sent, a frame received, a
// session ended. The subChecker follows each subscription's stream and
// reports at once what a single stream shows (duplicates, silent gaps,
// silent epoch changes, false resumes, altered data). The publishes are
// kept by idempotency key; finish then checks what needs every stream and
// every acknowledgment: nothing acknowledged is missing at the end, a key
// is applied at most once per epoch, one position holds one message.

// Violation kinds.
const (
	kDuplicate   = "duplicate"      // an offset again, or an older one, on one stream
	kGap         = "gap"            // offsets skipped with no reset
	kEpoch       = "epoch-change"   // a message of another epoch with no reset
	kReset       = "reset"          // a reset that moves back, or of an unknown reason
	kResume      = "resume"         // a subscribed answer that contradicts the since position
	kUnsolicited = "unsolicited"    // a frame for a subscription the session does not hold
	kData        = "data"           // data bytes differ from what was published
	kPhantom     = "phantom"        // a message no publisher sent, or on another topic
	kID          = "id"             // a message id that differs from the acknowledged one
	kLost        = "lost"           // an acknowledged message never delivered, no reset covering it
	kDouble      = "double-applied" // one idempotency key published twice in one epoch
	kReused      = "offset-reused"  // two messages at one position
	kRejected    = "rejected"       // a valid publish refused with a 4xx
	kUnsettled   = "unsettled"      // a subscription not back, or a fault not healed, at the end
	kRefused     = "subscribe-refused"
	kShutdown    = "shutdown"      // a node not done within its shutdown bound
	kBatch       = "batch-partial" // a batch through one Redis partly stored
)

// keepPerKind is how many violations of one kind keep their evidence;
// the rest are counted.
const keepPerKind = 4

// ringSize is how many recent events of a stream are kept as evidence.
const ringSize = 12

// streamPos is where a subscription's stream of one topic stands: the next
// message must be Offset+1 in Epoch.
type streamPos struct {
	Epoch  string
	Offset uint64
}

func (p streamPos) String() string { return fmt.Sprintf("%d@%s", p.Offset, p.Epoch) }

// msgPos is a message's place: topic, epoch, offset.
type msgPos struct {
	Topic, Epoch string
	Offset       uint64
}

func (p msgPos) String() string { return fmt.Sprintf("%s %d@%s", p.Topic, p.Offset, p.Epoch) }

// ack is what a publisher was told for one message.
type ack struct {
	ID     string
	Offset uint64
	Epoch  string
}

// attempt is one try of a publish.
type attempt struct {
	API, Node  string
	Start, End time.Duration // since the run started
	Outcome    string        // "ok", an HTTP status and error, a connection error
	Ack        *ack
}

func (a attempt) String() string {
	s := fmt.Sprintf("%s to %s at +%.3fs..+%.3fs: %s", a.API, a.Node, a.Start.Seconds(), a.End.Seconds(), a.Outcome)
	if a.Ack != nil {
		s += fmt.Sprintf(" -> id %s offset %d epoch %s", a.Ack.ID, a.Ack.Offset, a.Ack.Epoch)
	}
	return s
}

// pubRecord is one published message: one idempotency key, every try.
type pubRecord struct {
	Key, Topic string
	Data       []byte
	// Keyed tells that the key was sent to the broker, so that a retry
	// must not publish the message twice.
	Keyed    bool
	Marker   bool
	Attempts []attempt
	Rejected bool
}

// acks returns the acknowledgments of every try.
func (p *pubRecord) acks() []ack {
	var out []ack
	for _, a := range p.Attempts {
		if a.Ack != nil {
			out = append(out, *a.Ack)
		}
	}
	return out
}

// delivery is what a subscriber saw of a message.
type delivery struct {
	ID, Epoch string
	Offset    uint64
}

// violation is one breach of the contract and the history that shows it.
type violation struct {
	Kind   string
	Where  string // subscriber and stream, or the key
	Detail string
	Events []string // the stream's events up to the breach, oldest first
	Keys   []string // publishes that matter
	At     *msgPos  // where, to show the publishes around it
}

// checkStats counts what the checker saw.
type checkStats struct {
	Frames, Messages                int
	GapResets, LostResets           int
	Resumes, Recovered, Unrecovered int
	// CrossEpochDups counts keys applied in two epochs: allowed, since
	// Redis lost the first one's record with its data.
	CrossEpochDups int
	// UnkeyedDups counts messages applied twice whose key was not sent.
	UnkeyedDups int
}

// checker holds the run's publishes, what was delivered of them, and the
// violations found.
type checker struct {
	start       time.Time
	historySize uint64

	// mu guards every field below, and the pubRecords they hold.
	mu         sync.Mutex
	pubs       map[string]*pubRecord
	order      []string // keys in the order they were registered
	delivered  map[string]map[delivery]int
	markers    map[string]string // topic → key of its final marker
	subs       []*subChecker
	violations []*violation
	kinds      map[string]int
	dataSeen   map[string]bool // keys whose altered data was reported
	stats      checkStats
}

func newChecker(start time.Time, historySize uint64) *checker {
	return &checker{
		start: start, historySize: historySize,
		pubs: make(map[string]*pubRecord), delivered: make(map[string]map[delivery]int),
		markers: make(map[string]string), kinds: make(map[string]int), dataSeen: make(map[string]bool),
	}
}

func (c *checker) since() time.Duration { return time.Since(c.start) }

// ownedSince reports whether a stream subscribed at subscribedAt is owed
// the message of key: the first try to publish it began after. c.mu is
// held.
func (c *checker) ownedSince(key string, subscribedAt time.Duration) bool {
	p := c.pubs[key]
	return p == nil || len(p.Attempts) == 0 || p.Attempts[0].Start >= subscribedAt
}

// register records a message before its first try.
func (c *checker) register(p *pubRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pubs[p.Key] = p
	c.order = append(c.order, p.Key)
	if p.Marker {
		c.markers[p.Topic] = p.Key
	}
}

// tried records one try of the message key.
func (c *checker) tried(key string, a attempt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pubs[key]; p != nil {
		p.Attempts = append(p.Attempts, a)
	}
}

// rejected records that the message key was refused for good.
func (c *checker) rejected(key, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pubs[key]
	if p == nil || p.Rejected {
		return
	}
	p.Rejected = true
	c.addLocked(&violation{Kind: kRejected, Where: "key " + key, Detail: why, Keys: []string{key}})
}

// violate records a violation found outside the streams.
func (c *checker) violate(v *violation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addLocked(v)
}

func (c *checker) addLocked(v *violation) {
	c.kinds[v.Kind]++
	if c.kinds[v.Kind] <= keepPerKind {
		c.violations = append(c.violations, v)
	}
}

// count returns the number of violations found.
func (c *checker) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.kinds {
		n += k
	}
	return n
}

// subscriber returns the checker of a new subscriber.
func (c *checker) subscriber(name string) *subChecker {
	s := &subChecker{c: c, name: name, exact: make(map[string]*exactSub), wild: make(map[string]*wildSub), rings: make(map[string]*ring)}
	c.mu.Lock()
	c.subs = append(c.subs, s)
	c.mu.Unlock()
	return s
}

// keyOf finds the idempotency key in a message's data: every published
// value holds it as "ck." followed by [a-z0-9.], whatever else the broker
// did to the bytes.
func keyOf(data []byte) string {
	i := bytes.Index(data, []byte("ck."))
	if i < 0 {
		return ""
	}
	j := i + 3
	for j < len(data) && (data[j] >= 'a' && data[j] <= 'z' || data[j] >= '0' && data[j] <= '9' || data[j] == '.') {
		j++
	}
	return strings.TrimRight(string(data[i:j]), ".")
}

// message checks a delivered message's data against what was published
// and records its id and position for finish.
func (c *checker) message(s *subChecker, f wstest.Frame, stream string) {
	key := keyOf(f.Data)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Messages++
	p := c.pubs[key]
	if p == nil || p.Topic != f.Topic {
		c.addLocked(&violation{Kind: kPhantom, Where: s.where(stream),
			Detail: fmt.Sprintf("message %s with data %s matches no publish to its topic", f.ID, clip(f.Data)),
			Events: s.evidence(stream), At: &msgPos{f.Topic, f.Epoch, f.Offset}})
		return
	}
	if !bytes.Equal(f.Data, p.Data) {
		// Counted at every delivery; evidence kept once per key.
		c.kinds[kData]++
		if !c.dataSeen[key] && len(c.dataSeen) < keepPerKind {
			c.dataSeen[key] = true
			c.violations = append(c.violations, &violation{Kind: kData, Where: s.where(stream),
				Detail: fmt.Sprintf("data differs from the published bytes at byte %d\n      sent:     %q\n      received: %q",
					firstDiff(f.Data, p.Data), p.Data, []byte(f.Data)),
				Events: s.evidence(stream), Keys: []string{key}, At: &msgPos{f.Topic, f.Epoch, f.Offset}})
		}
	}
	d := c.delivered[key]
	if d == nil {
		d = make(map[delivery]int, 1)
		c.delivered[key] = d
	}
	d[delivery{ID: f.ID, Epoch: f.Epoch, Offset: f.Offset}]++
}

func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// show prints a frame as received, except for the characters a terminal
// would not show (U+2028, newlines, tabs…), written ⟪U+2028⟫. The data
// violations quote the exact bytes.
func show(raw []byte) string {
	var b strings.Builder
	for _, r := range string(raw) {
		if unicode.IsGraphic(r) {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "⟪U+%04X⟫", r)
		}
	}
	return b.String()
}

func clip(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%q…", b[:200])
	}
	return fmt.Sprintf("%q", b)
}

// subState is a subscription's state on the current session.
type subState int

const (
	idle    subState = iota // not subscribed on this session
	pending                 // subscribe sent, no answer yet
	active                  // subscribed
)

// exactSub is an exact-topic subscription. Its position carries across
// sessions: it is what the next session resumes from.
type exactSub struct {
	state subState
	known bool
	pos   streamPos
	since *streamPos // sent with the subscribe of this session
	// final is the state frozen at the end of the run.
	finalActive bool
	finalPos    streamPos
}

// wildSub is a pattern subscription: one stream per topic, per session.
type wildSub struct {
	state  subState
	topics map[string]streamPos
	// since is when the subscription of this session was answered: a
	// pattern does not resume, so it is owed what is published after.
	since       time.Duration
	finalActive bool
	finalTopics map[string]streamPos
	finalSince  time.Duration
}

// ring keeps a stream's recent events.
type ring struct {
	ev   [ringSize]event
	next int
	n    int
}

type event struct {
	seq  int
	text string
}

func (r *ring) add(e event) {
	r.ev[r.next] = e
	r.next = (r.next + 1) % ringSize
	if r.n < ringSize {
		r.n++
	}
}

func (r *ring) events() []event {
	out := make([]event, 0, r.n)
	for i := 0; i < r.n; i++ {
		out = append(out, r.ev[(r.next-r.n+i+ringSize)%ringSize])
	}
	return out
}

// subChecker follows one subscriber's streams. Its methods are called by
// the subscriber's goroutine, in the order of events, one at a time.
type subChecker struct {
	c     *checker
	name  string
	seq   int
	conn  int
	node  string
	exact map[string]*exactSub
	wild  map[string]*wildSub
	rings map[string]*ring // by stream: topic, pattern, or pattern+" "+topic
	// pong is the ref of the last pong.
	pong   string
	frozen bool
}

// watch declares the subscriber's subscriptions, before its first session.
func (s *subChecker) watch(patterns ...string) {
	for _, p := range patterns {
		if isPattern(p) {
			s.wild[p] = &wildSub{}
		} else {
			s.exact[p] = &exactSub{}
		}
	}
}

func (s *subChecker) where(stream string) string { return s.name + " " + stream }

// note adds an event to the rings of streams.
func (s *subChecker) note(text string, streams ...string) {
	s.seq++
	e := event{seq: s.seq, text: fmt.Sprintf("#%d +%.3fs c%d@%s %s", s.seq, s.c.since().Seconds(), s.conn, s.node, text)}
	for _, st := range streams {
		r := s.rings[st]
		if r == nil {
			r = &ring{}
			s.rings[st] = r
		}
		r.add(e)
	}
}

// allStreams names every subscription's pattern-level stream.
func (s *subChecker) allStreams() []string {
	out := make([]string, 0, len(s.exact)+len(s.wild))
	for t := range s.exact {
		out = append(out, t)
	}
	for p := range s.wild {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// evidence returns the recent events of stream; a wildcard topic's
// stream includes its pattern's events.
func (s *subChecker) evidence(stream string) []string {
	var evs []event
	if r := s.rings[stream]; r != nil {
		evs = append(evs, r.events()...)
	}
	if p, _, ok := strings.Cut(stream, " "); ok {
		if r := s.rings[p]; r != nil {
			evs = append(evs, r.events()...)
		}
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].seq < evs[j].seq })
	evs = slices.CompactFunc(evs, func(a, b event) bool { return a.seq == b.seq })
	if len(evs) > ringSize {
		evs = evs[len(evs)-ringSize:]
	}
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.text
	}
	return out
}

func (s *subChecker) violate(kind, stream, detail string, at *msgPos) {
	s.c.violate(&violation{Kind: kind, Where: s.where(stream), Detail: detail, Events: s.evidence(stream), At: at})
}

// open starts session conn on node.
func (s *subChecker) open(conn int, node string) {
	s.conn, s.node = conn, node
	s.note("session opened", s.allStreams()...)
	for _, w := range s.wild {
		w.state, w.topics = idle, nil
	}
	for _, e := range s.exact {
		e.state, e.since = idle, nil
	}
}

// since returns the position the next subscribe to topic resumes from,
// or nil when the stream has none yet.
func (s *subChecker) since(topic string) *streamPos {
	e := s.exact[topic]
	if e == nil || !e.known {
		return nil
	}
	p := e.pos
	return &p
}

// subscribe records a subscribe command sent on the current session.
func (s *subChecker) subscribe(topic string, since *streamPos) {
	if w := s.wild[topic]; w != nil {
		w.state, w.topics = pending, make(map[string]streamPos)
		s.note("> subscribe "+topic, topic)
		return
	}
	e := s.exact[topic]
	if e == nil {
		e = &exactSub{}
		s.exact[topic] = e
	}
	e.state, e.since = pending, since
	if since != nil {
		s.note("> subscribe "+topic+" since "+since.String(), topic)
	} else {
		s.note("> subscribe "+topic, topic)
	}
}

// closed ends the current session.
func (s *subChecker) closed(why string) {
	s.note("session ended: "+why, s.allStreams()...)
	for _, w := range s.wild {
		w.state, w.topics = idle, nil
	}
	for _, e := range s.exact {
		e.state, e.since = idle, nil
	}
}

// settled reports whether every subscription is active on the session.
func (s *subChecker) settled() bool {
	for _, e := range s.exact {
		if e.state != active {
			return false
		}
	}
	for _, w := range s.wild {
		if w.state != active {
			return false
		}
	}
	return true
}

// reached reports whether every stream that covers topic is at or past
// p, or in p's epoch past it: the subscriber has the message at p.
func (s *subChecker) reached(topic string, p streamPos) bool {
	if e := s.exact[topic]; e != nil {
		if e.state != active || e.pos.Epoch != p.Epoch || e.pos.Offset < p.Offset {
			return false
		}
	}
	for pat, w := range s.wild {
		if !match(pat, topic) {
			continue
		}
		tp, ok := w.topics[topic]
		if w.state != active || !ok || tp.Epoch != p.Epoch || tp.Offset < p.Offset {
			return false
		}
	}
	return true
}

// freeze records the streams' final state, before the sessions are
// closed at the end of the run.
func (s *subChecker) freeze() {
	if s.frozen {
		return
	}
	s.frozen = true
	for _, e := range s.exact {
		e.finalActive, e.finalPos = e.state == active && e.known, e.pos
	}
	for _, w := range s.wild {
		w.finalActive, w.finalSince = w.state == active, w.since
		w.finalTopics = make(map[string]streamPos, len(w.topics))
		for t, p := range w.topics {
			w.finalTopics[t] = p
		}
	}
}

// frame checks one frame received on the current session.
func (s *subChecker) frame(f wstest.Frame) {
	s.c.mu.Lock()
	s.c.stats.Frames++
	s.c.mu.Unlock()
	switch f.Type {
	case "subscribed":
		s.subscribed(f)
	case "message":
		s.message(f)
	case "reset":
		s.reset(f)
	case "error":
		topic, ok := strings.CutPrefix(f.Ref, "s:")
		if !ok {
			return
		}
		s.note("< "+show(f.Raw), topic)
		if e := s.exact[topic]; e != nil && e.state == pending {
			e.state = idle
		} else if w := s.wild[topic]; w != nil && w.state == pending {
			w.state = idle
		}
		if f.Code != "unavailable" {
			s.violate(kRefused, topic, "subscribe answered "+string(f.Raw), nil)
		}
	case "pong":
		s.pong = f.Ref
		s.note("< "+show(f.Raw), s.allStreams()...)
	case "welcome":
	default:
		s.note("< "+show(f.Raw), s.allStreams()...)
	}
}

func (s *subChecker) subscribed(f wstest.Frame) {
	if w := s.wild[f.Topic]; w != nil {
		s.note("< "+show(f.Raw), f.Topic)
		if w.state != pending {
			s.violate(kUnsolicited, f.Topic, "subscribed answer with no subscribe pending", nil)
		}
		w.state, w.topics, w.since = active, make(map[string]streamPos), s.c.since()
		return
	}
	e := s.exact[f.Topic]
	if e == nil {
		s.note("< "+show(f.Raw), f.Topic)
		s.violate(kUnsolicited, f.Topic, "subscribed answer for a topic never subscribed", nil)
		return
	}
	s.note("< "+show(f.Raw), f.Topic)
	if e.state != pending {
		s.violate(kUnsolicited, f.Topic, "subscribed answer with no subscribe pending", nil)
	}
	now := streamPos{Epoch: f.Epoch, Offset: f.Offset}
	at := &msgPos{f.Topic, f.Epoch, f.Offset}
	if e.since != nil {
		s.c.mu.Lock()
		s.c.stats.Resumes++
		if f.Recovered {
			s.c.stats.Recovered++
		} else {
			s.c.stats.Unrecovered++
		}
		s.c.mu.Unlock()
	}
	switch {
	case f.Recovered && e.since == nil:
		s.violate(kResume, f.Topic, "recovered:true answers a subscribe without since", at)
		e.pos = now
	case f.Recovered && f.Epoch != e.since.Epoch:
		s.violate(kResume, f.Topic, fmt.Sprintf("recovered:true in epoch %s, but since was in %s", f.Epoch, e.since.Epoch), at)
		e.pos = now
	case f.Recovered && f.Offset < e.since.Offset:
		s.violate(kResume, f.Topic, fmt.Sprintf("recovered:true at %s, behind since %s", now, e.since), at)
		e.pos = *e.since
	case f.Recovered:
		// The replay follows: since.Offset+1 up to f.Offset.
		e.pos = *e.since
	case e.since != nil && f.Epoch == e.since.Epoch && f.Offset < e.since.Offset:
		s.violate(kResume, f.Topic, fmt.Sprintf("the topic is at %s, behind what the subscriber already had (%s), in the same epoch", now, e.since), at)
		e.pos = now
	case e.since != nil && f.Epoch == e.since.Epoch && f.Offset-e.since.Offset <= s.c.historySize:
		s.violate(kResume, f.Topic, fmt.Sprintf("recovered:false at %s, though since %s is in the same epoch and within -history-size", now, e.since), at)
		e.pos = now
	default:
		e.pos = now
	}
	e.known, e.state = true, active
}

// step moves stream p past message f, reporting what does not follow.
func (s *subChecker) step(p *streamPos, f wstest.Frame, stream string) {
	at := &msgPos{f.Topic, f.Epoch, f.Offset}
	switch {
	case f.Epoch != p.Epoch:
		s.violate(kEpoch, stream, fmt.Sprintf("message %d@%s while the stream is at %s: the epoch changed with no reset", f.Offset, f.Epoch, p), at)
		*p = streamPos{Epoch: f.Epoch, Offset: f.Offset}
	case f.Offset == p.Offset+1:
		p.Offset = f.Offset
	case f.Offset <= p.Offset:
		s.violate(kDuplicate, stream, fmt.Sprintf("offset %d received after %d (stream at %s)", f.Offset, p.Offset, p), at)
	default:
		s.violate(kGap, stream, fmt.Sprintf("offset %d after %d: offsets %d..%d skipped with no reset", f.Offset, p.Offset, p.Offset+1, f.Offset-1), at)
		p.Offset = f.Offset
	}
}

func (s *subChecker) message(f wstest.Frame) {
	if f.Sub == "" {
		e := s.exact[f.Topic]
		s.note("< "+show(f.Raw), f.Topic)
		if e == nil || e.state != active {
			s.violate(kUnsolicited, f.Topic, "message for a topic not subscribed (or before its subscribed answer) on this session", &msgPos{f.Topic, f.Epoch, f.Offset})
		} else {
			s.step(&e.pos, f, f.Topic)
		}
		s.c.message(s, f, f.Topic)
		return
	}
	stream := f.Sub + " " + f.Topic
	s.note("< "+show(f.Raw), stream)
	w := s.wild[f.Sub]
	switch {
	case w == nil || w.state != active || !match(f.Sub, f.Topic):
		s.violate(kUnsolicited, stream, "message through a pattern not subscribed on this session, or not matching its topic", &msgPos{f.Topic, f.Epoch, f.Offset})
	default:
		if p, ok := w.topics[f.Topic]; ok {
			s.step(&p, f, stream)
			w.topics[f.Topic] = p
		} else {
			// A pattern stream starts wherever its first message is.
			w.topics[f.Topic] = streamPos{Epoch: f.Epoch, Offset: f.Offset}
		}
	}
	s.c.message(s, f, stream)
}

func (s *subChecker) reset(f wstest.Frame) {
	s.c.mu.Lock()
	switch f.Reason {
	case "gap":
		s.c.stats.GapResets++
	case "history_lost":
		s.c.stats.LostResets++
	}
	s.c.mu.Unlock()
	to := streamPos{Epoch: f.Epoch, Offset: f.Offset}
	at := &msgPos{f.Topic, f.Epoch, f.Offset}
	stream := f.Topic
	var p *streamPos
	known := true
	if f.Sub == "" {
		s.note("< "+show(f.Raw), stream)
		e := s.exact[f.Topic]
		if e == nil || e.state != active {
			s.violate(kUnsolicited, stream, "reset for a topic not subscribed on this session", at)
			return
		}
		p = &e.pos
	} else {
		stream = f.Sub + " " + f.Topic
		s.note("< "+show(f.Raw), stream)
		w := s.wild[f.Sub]
		if w == nil || w.state != active || !match(f.Sub, f.Topic) {
			s.violate(kUnsolicited, stream, "reset through a pattern not subscribed on this session", at)
			return
		}
		var cur streamPos
		cur, known = w.topics[f.Topic]
		defer func() { w.topics[f.Topic] = cur }()
		p = &cur
	}
	if f.Reason != "gap" && f.Reason != "history_lost" {
		s.violate(kReset, stream, "reset with an unknown reason "+f.Reason, at)
	}
	if known && f.Epoch == p.Epoch && f.Offset < p.Offset {
		s.violate(kReset, stream, fmt.Sprintf("reset to %s moves the stream back from %s in the same epoch", to, p), at)
	}
	*p = to
}

// finish checks what needs every stream and every acknowledgment. Call
// it once the subscribers are frozen and stopped.
func (c *checker) finish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	byPos := make(map[msgPos]string)
	claim := func(p msgPos, key, how string) {
		if other, ok := byPos[p]; ok && other != key {
			c.addLocked(&violation{Kind: kReused, Where: p.String(),
				Detail: fmt.Sprintf("two messages hold %s: %s and %s (%s)", p, other, key, how), Keys: []string{other, key}, At: &p})
			return
		}
		byPos[p] = key
	}
	ackedByTopic := make(map[string][]string) // topic → keys with an ack
	for _, key := range c.order {
		p := c.pubs[key]
		acks := p.acks()
		if len(acks) > 0 {
			ackedByTopic[p.Topic] = append(ackedByTopic[p.Topic], key)
		}
		// Every position and id the key was given or seen at.
		offsets := make(map[string]map[uint64]string) // epoch → offset → id
		add := func(epoch string, off uint64, id, how string) {
			if offsets[epoch] == nil {
				offsets[epoch] = make(map[uint64]string)
			}
			if prev, ok := offsets[epoch][off]; ok && prev != id {
				c.addLocked(&violation{Kind: kID, Where: "key " + key,
					Detail: fmt.Sprintf("%s %d@%s has id %s (%s), elsewhere %s", p.Topic, off, epoch, id, how, prev), Keys: []string{key}, At: &msgPos{p.Topic, epoch, off}})
			}
			if _, ok := offsets[epoch][off]; !ok {
				offsets[epoch][off] = id
			}
			claim(msgPos{p.Topic, epoch, off}, key, how)
		}
		for _, a := range acks {
			add(a.Epoch, a.Offset, a.ID, "acknowledged")
		}
		ds := make([]delivery, 0, len(c.delivered[key]))
		for d := range c.delivered[key] {
			ds = append(ds, d)
		}
		sort.Slice(ds, func(i, j int) bool {
			return ds[i].Offset < ds[j].Offset || ds[i].Offset == ds[j].Offset && ds[i].ID < ds[j].ID
		})
		for _, d := range ds {
			add(d.Epoch, d.Offset, d.ID, "delivered")
		}
		double := false
		var where []string
		for epoch, offs := range offsets {
			if len(offs) > 1 {
				double = true
			}
			for off := range offs {
				where = append(where, fmt.Sprintf("%d@%s", off, epoch))
			}
		}
		sort.Strings(where)
		switch {
		case double && p.Keyed:
			c.addLocked(&violation{Kind: kDouble, Where: "key " + key,
				Detail: fmt.Sprintf("published more than once in one epoch, at %s", strings.Join(where, ", ")), Keys: []string{key}})
		case double:
			c.stats.UnkeyedDups++
		case len(offsets) > 1:
			c.stats.CrossEpochDups++
		}
	}
	for _, s := range c.subs {
		s.freeze()
		for _, topic := range sortedKeys(s.exact) {
			e := s.exact[topic]
			if !e.finalActive {
				c.addLocked(&violation{Kind: kUnsettled, Where: s.where(topic), Detail: "not subscribed at the end of the run", Events: s.evidence(topic)})
				continue
			}
			c.tailLocked(s, topic, topic, e.finalPos, true, ackedByTopic[topic], 0)
		}
		for _, pat := range sortedKeys(s.wild) {
			w := s.wild[pat]
			if !w.finalActive {
				c.addLocked(&violation{Kind: kUnsettled, Where: s.where(pat), Detail: "not subscribed at the end of the run", Events: s.evidence(pat)})
				continue
			}
			for _, topic := range sortedKeys(ackedByTopic) {
				if !match(pat, topic) {
					continue
				}
				p, ok := w.finalTopics[topic]
				c.tailLocked(s, pat+" "+topic, topic, p, ok, ackedByTopic[topic], w.finalSince)
			}
		}
	}
}

// tailLocked reports the acknowledged messages of topic that a stream
// which ended at last (if known) should hold and does not: those after
// last in its epoch, and the run's final marker when the stream is in
// another epoch. A pattern's stream, which does not resume, is owed the
// final marker only when it was subscribed (at subscribedAt) before the
// marker's publish began. c.mu is held.
func (c *checker) tailLocked(s *subChecker, stream, topic string, last streamPos, known bool, keys []string, subscribedAt time.Duration) {
	var missing []string
	for _, key := range keys {
		for _, a := range c.pubs[key].acks() {
			if known && a.Epoch == last.Epoch && a.Offset > last.Offset {
				missing = append(missing, fmt.Sprintf("%s (%d@%s)", key, a.Offset, a.Epoch))
				break
			}
		}
	}
	if mk := c.markers[topic]; mk != "" && len(missing) == 0 && c.ownedSince(mk, subscribedAt) {
		for _, a := range c.pubs[mk].acks() {
			if !known || a.Epoch != last.Epoch {
				missing = append(missing, fmt.Sprintf("%s (%d@%s, the final marker)", mk, a.Offset, a.Epoch))
				break
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	at := "nothing received on this session"
	if known {
		at = "at " + last.String()
	}
	keysShown := missing
	if len(keysShown) > 5 {
		keysShown = keysShown[:5]
	}
	var ks []string
	for _, m := range keysShown {
		k, _, _ := strings.Cut(m, " ")
		ks = append(ks, k)
	}
	c.addLocked(&violation{Kind: kLost, Where: s.where(stream),
		Detail: fmt.Sprintf("%d acknowledged message(s) never delivered, the stream ended %s with no reset covering them: %s",
			len(missing), at, strings.Join(keysShown, ", ")),
		Events: s.evidence(stream), Keys: ks})
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// report describes the violations: counts by kind, then the kept ones
// with their evidence and the publishes that matter.
func (c *checker) report() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	kinds := sortedKeys(c.kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "  %s: %d\n", k, c.kinds[k])
	}
	byPos := make(map[msgPos][]string)
	for _, key := range c.order {
		p := c.pubs[key]
		for _, a := range p.acks() {
			mp := msgPos{p.Topic, a.Epoch, a.Offset}
			byPos[mp] = append(byPos[mp], key)
		}
		for d := range c.delivered[key] {
			mp := msgPos{p.Topic, d.Epoch, d.Offset}
			if !slices.Contains(byPos[mp], key) {
				byPos[mp] = append(byPos[mp], key)
			}
		}
	}
	for _, v := range c.violations {
		fmt.Fprintf(&b, "\n[%s] %s: %s\n", v.Kind, v.Where, v.Detail)
		if len(v.Events) > 0 {
			b.WriteString("    frames of the stream, oldest first:\n")
			for _, e := range v.Events {
				fmt.Fprintf(&b, "      %s\n", e)
			}
		}
		keys := slices.Clone(v.Keys)
		if v.At != nil {
			for off := v.At.Offset - min(v.At.Offset, 1); off <= v.At.Offset+1; off++ {
				for _, k := range byPos[msgPos{v.At.Topic, v.At.Epoch, off}] {
					if !slices.Contains(keys, k) {
						keys = append(keys, k)
					}
				}
			}
		}
		for _, k := range keys {
			p := c.pubs[k]
			if p == nil {
				continue
			}
			fmt.Fprintf(&b, "    publish %s to %s (key sent: %v), data %s:\n", k, p.Topic, p.Keyed, clip(p.Data))
			for _, a := range p.Attempts {
				fmt.Fprintf(&b, "      %s\n", a)
			}
			var ds []string
			for d, n := range c.delivered[k] {
				ds = append(ds, fmt.Sprintf("%d@%s id %s ×%d", d.Offset, d.Epoch, d.ID, n))
			}
			sort.Strings(ds)
			if len(ds) > 0 {
				fmt.Fprintf(&b, "      delivered at: %s\n", strings.Join(ds, "; "))
			}
		}
	}
	return b.String()
}

// kindsLine is the violation counts as "kind=n …".
func (c *checker) kindsLine() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for _, k := range sortedKeys(c.kinds) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c.kinds[k]))
	}
	return strings.Join(parts, " ")
}

// isPattern reports whether a subscription names a wildcard pattern.
func isPattern(s string) bool {
	for _, seg := range strings.Split(s, ".") {
		if seg == "*" || seg == ">" {
			return true
		}
	}
	return false
}

// match reports whether topic matches pattern, with NATS semantics: `*`
// is one segment, a final `>` one or more.
func match(pattern, topic string) bool {
	ps, ts := strings.Split(pattern, "."), strings.Split(topic, ".")
	for i, p := range ps {
		if p == ">" {
			return i == len(ps)-1 && len(ts) > i
		}
		if i >= len(ts) || p != "*" && p != ts[i] {
			return false
		}
	}
	return len(ps) == len(ts)
}
