package broker

// Encoding names one of a broker's encoders. Each session's frames are
// encoded with the encoder of its encoding: a WebSocket session's as
// WebSocket frames, a compressing one's deflated, a Server-Sent Events
// stream's as events. A message is encoded at most once per encoding (per
// wildcard pattern for deliveries through patterns), whatever the number
// of subscribers.
type Encoding uint8

// DefaultEncoding is the encoding of the encoder New was given.
const DefaultEncoding Encoding = 0

// MaxEncodings bounds the encoders of one broker.
const MaxEncodings = 4

// AddEncoder registers enc beside the encoders the broker has and returns
// its Encoding, for NewSessionEncoded. Register every encoder while the
// node starts, before a session uses it; a broker holds at most
// MaxEncodings (AddEncoder panics past that, a programming error).
func (b *Broker) AddEncoder(enc Encoder) Encoding {
	b.encMu.Lock()
	defer b.encMu.Unlock()
	old := b.encoders()
	if len(old) >= MaxEncodings {
		panic("broker: more than MaxEncodings encoders")
	}
	encs := append(old[:len(old):len(old)], enc)
	b.encs.Store(&encs)
	return Encoding(len(old))
}

// encoders returns the broker's encoders, indexed by Encoding.
func (b *Broker) encoders() []Encoder { return *b.encs.Load() }

// NewSessionEncoded opens a session, as NewSession does, whose frames are
// encoded with the encoder of e (from AddEncoder). It panics if e names
// no encoder of the broker.
func (b *Broker) NewSessionEncoded(e Encoding) *Session {
	if int(e) >= len(b.encoders()) {
		panic("broker: no such encoding")
	}
	s := b.NewSession()
	s.enc = e
	return s
}

// encoder returns the encoder of the session's frames.
func (s *Session) encoder() Encoder { return s.b.encoders()[s.enc] }

// messageFrames encodes one delivery's frames of a message for the
// encodings of the sessions it goes to, each at most once.
type messageFrames struct {
	m    *Message
	encs []Encoder
	// exact is each encoding's frame for exact subscribers.
	exact [MaxEncodings][]byte
	// shared is each encoding's part shared by the deliveries through
	// patterns (nil when the encoder encodes each pattern's frame whole);
	// sharedSet tells whether it was asked for, and unchargedShared is
	// its size until a pattern's deliveries are charged for it.
	shared          [MaxEncodings][]byte
	sharedSet       [MaxEncodings]bool
	unchargedShared [MaxEncodings]int
}

// exactFrame returns the frame of a delivery with encoding e through an
// exact subscription.
func (mf *messageFrames) exactFrame(e Encoding) []byte {
	if mf.exact[e] == nil {
		mf.exact[e] = mf.encs[e].Message(mf.m, "")
	}
	return mf.exact[e]
}

// patternParts returns the parts of the frame of a delivery with encoding
// e through pattern, and the bytes to charge for them: the shared part is
// charged once, to the first pattern's deliveries, so that the budget
// counts what the node holds.
func (mf *messageFrames) patternParts(e Encoding, pattern string) (head, mid, tail []byte, size int) {
	if !mf.sharedSet[e] {
		mf.shared[e] = mf.encs[e].MessageShared(mf.m)
		mf.sharedSet[e] = true
		mf.unchargedShared[e] = len(mf.shared[e])
	}
	if mf.shared[e] == nil {
		frame := mf.encs[e].Message(mf.m, pattern)
		return nil, frame, nil, len(frame)
	}
	head, tail = mf.encs[e].MessageEnds(mf.shared[e], pattern)
	size = len(head) + mf.unchargedShared[e] + len(tail)
	mf.unchargedShared[e] = 0
	return head, mf.shared[e], tail, size
}

// encodingCounts counts subs by their session's encoding.
func encodingCounts(subs []*subscription) (n [MaxEncodings]int) {
	for _, s := range subs {
		n[s.sess.enc]++
	}
	return n
}
