package broker

// Deliver queues m to every local subscription that matches its topic. The
// frame is encoded once for exact subscribers and once per matching pattern.
// It never blocks: a subscriber whose queue is full is marked a slow
// consumer and closed by its writer. With tracing on, a message that
// carries a trace context is delivered inside one deliver span.
func (b *Broker) Deliver(m *Message) {
	if b.tel.tracer != nil && len(m.Trace) > 0 {
		b.deliverTraced(m)
		return
	}
	b.deliver(m)
}

// deliver queues m to the local subscriptions and returns their number.
func (b *Broker) deliver(m *Message) uint64 {
	var n uint64
	// at is when m was accepted; the session writer measures delivery
	// latency from it.
	var at int64
	if !m.Time.IsZero() {
		at = m.Time.UnixNano()
	}
	var f fanout
	b.budget.begin(&f)
	defer b.budget.end(&f)
	mf := messageFrames{m: m, encs: b.encoders()}
	sh := b.shard(m.Topic)
	sh.mu.RLock()
	if h := sh.hubs[m.Topic]; h != nil && len(h.subs) > 0 {
		if h.encodings[DefaultEncoding] == len(h.subs) {
			// Every session has the default encoding (the common case,
			// whatever encoders the node registered).
			frame := mf.exactFrame(DefaultEncoding)
			// The frame is shared: each queue counts its share of it.
			charge := len(frame)/len(h.subs) + entrySize
			for _, s := range h.subs {
				s.deliver(frame, charge, m.Epoch, m.Offset, at, &f)
			}
		} else {
			// One frame per encoding, each shared by its sessions.
			counts := &h.encodings
			var charges [MaxEncodings]int
			for _, s := range h.subs {
				e := s.sess.enc
				frame := mf.exactFrame(e)
				if charges[e] == 0 {
					charges[e] = len(frame)/counts[e] + entrySize
				}
				s.deliver(frame, charges[e], m.Epoch, m.Offset, at, &f)
			}
		}
		n += uint64(len(h.subs))
	}
	sh.mu.RUnlock()
	if b.patterns.len() > 0 {
		// The part every pattern's frame shares is encoded once per
		// encoding; each pattern adds only its frame header and its
		// "sub" (see messageFrames.patternParts).
		b.patterns.match(m.Topic, func(pattern string, subs []*subscription) {
			if len(subs) == 0 {
				return
			}
			counts := [MaxEncodings]int{len(subs)}
			if len(mf.encs) > 1 {
				counts = encodingCounts(subs)
			}
			var parts [MaxEncodings]struct {
				head, mid, tail []byte
				charge          int
			}
			for _, s := range subs {
				e := s.sess.enc
				p := &parts[e]
				if p.mid == nil {
					var size int
					p.head, p.mid, p.tail, size = mf.patternParts(e, pattern)
					p.charge = size/counts[e] + 3*entrySize
				}
				s.deliverParts(p.head, p.mid, p.tail, p.charge, m.Epoch, m.Offset, at, &f)
			}
			n += uint64(len(subs))
		})
	}
	b.stats.delivered.Add(n)
	return n
}

// Reset queues a reset notice to every local subscription that matches
// topic; each then continues after pos.
func (b *Broker) Reset(topic string, pos Position, reason string) {
	switch reason {
	case ResetHistoryLost:
		b.stats.outcomes.historyLost.Add(1)
	case ResetGap:
		b.stats.outcomes.gap.Add(1)
	}
	encs := b.encoders()
	sh := b.shard(topic)
	sh.mu.RLock()
	if h := sh.hubs[topic]; h != nil && len(h.subs) > 0 {
		var frames [MaxEncodings][]byte
		for _, s := range h.subs {
			e := s.sess.enc
			if frames[e] == nil {
				frames[e] = encs[e].Reset(topic, "", pos, reason)
			}
			s.reset(frames[e], pos)
		}
	}
	sh.mu.RUnlock()
	if b.patterns.len() > 0 {
		b.patterns.match(topic, func(pattern string, subs []*subscription) {
			var frames [MaxEncodings][]byte
			for _, s := range subs {
				e := s.sess.enc
				if frames[e] == nil {
					frames[e] = encs[e].Reset(topic, pattern, pos, reason)
				}
				s.reset(frames[e], pos)
			}
		})
	}
}
