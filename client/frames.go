package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tidings-io/tidings/protocol"
)

// errResubscribe ends a connection whose subscribe the broker could not
// serve for now (its store is down, say): the client reconnects with
// backoff and tries again.
type errResubscribe struct{ e *Error }

func (e errResubscribe) Error() string { return "resubscribing later: " + e.e.Error() }
func (e errResubscribe) Unwrap() error { return e.e }

// handle handles one frame from the broker.
func (s *Subscription) handle(c *conn, msg []byte) error {
	var f protocol.Frame
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

// streamOf returns the active subscription a message or reset frame
// belongs to: the exact subscription to its topic, or the wildcard one it
// names in sub when the topic has no exact subscription (which gets its
// own frames); nil when there is none.
func (s *Subscription) streamOf(f protocol.Frame) *pattern {
	if f.Sub == "" {
		if p := s.pats[f.Topic]; p != nil && !p.wild && p.state == active {
			return p
		}
		return nil
	}
	p := s.pats[f.Sub]
	if p == nil || !p.wild || p.state != active {
		return nil
	}
	if ex := s.pats[f.Topic]; ex != nil && !ex.wild {
		return nil // the exact subscription gets its own
	}
	return p
}

// last returns the position last taken of topic through p: p's own for
// an exact subscription, the topic's through any pattern for a wildcard.
func (s *Subscription) last(p *pattern, topic string) (Position, bool) {
	if p.wild {
		pos, ok := s.wpos[topic]
		return pos, ok
	}
	return p.pos, p.has
}

// advance records pos as the position last taken of topic through p.
func (s *Subscription) advance(p *pattern, topic string, pos Position) {
	if p.wild {
		s.wpos[topic] = pos
	} else {
		p.pos, p.has = pos, true
	}
}

func (s *Subscription) onMessage(f protocol.Frame) error {
	p := s.streamOf(f)
	if p == nil {
		return nil
	}
	if old, had := s.last(p, f.Topic); had && old.Epoch == f.Epoch {
		if f.Offset <= old.Offset {
			return nil // delivered already (through another pattern, for a wildcard)
		}
		if !p.wild && f.Offset > old.Offset+1 {
			s.log.Warn("tidings: offsets skipped without a reset", "topic", f.Topic, "after", old.Offset, "got", f.Offset)
		}
	}
	s.advance(p, f.Topic, Position{Offset: f.Offset, Epoch: f.Epoch})
	return s.enqueue(item{kind: itemDelivery, d: deliveryOf(f)})
}

func (s *Subscription) onReset(f protocol.Frame) error {
	p := s.streamOf(f)
	if p == nil {
		return nil
	}
	pos := Position{Offset: f.Offset, Epoch: f.Epoch}
	if old, had := s.last(p, f.Topic); had && old == pos {
		return nil // nothing missed: told already
	}
	s.advance(p, f.Topic, pos)
	return s.enqueue(item{kind: itemReset, reset: Reset{Topic: f.Topic, Sub: f.Sub, Offset: f.Offset, Epoch: f.Epoch, Reason: f.Reason}})
}

func (s *Subscription) onSubscribed(f protocol.Frame) error {
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
	if err != nil {
		return err
	}
	return s.checkReady()
}

func (s *Subscription) onUnsubscribed(f protocol.Frame) error {
	if f.Ref != "" {
		return nil // the client sends no unsubscribe
	}
	p := s.pats[f.Topic]
	if p == nil {
		return nil
	}
	s.drop(p)
	if err := s.checkReady(); err != nil {
		return err
	}
	return s.enqueue(item{kind: itemUnsubscribed, pattern: f.Topic,
		err: &Error{Code: protocol.CodeForbidden, Message: "the broker ended the subscription to " + f.Topic}})
}

func (s *Subscription) onError(f protocol.Frame) error {
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
	case protocol.CodeUnavailable, protocol.CodeRateLimited, protocol.CodeInternal:
		return errResubscribe{e}
	}
	s.drop(p)
	return s.enqueue(item{kind: itemUnsubscribed, pattern: name, err: e})
}

// enqueue hands it to the pump, waiting while the queue is full
// (backpressure). Before Subscribe returns nobody reads C, so an item the
// queue has no room for then is held in early, as is every item after
// it, until the broker has accepted every pattern (markReady).
func (s *Subscription) enqueue(it item) error {
	if !s.readySent {
		if len(s.early) == 0 {
			select {
			case s.queue <- it:
				return nil
			default:
			}
		}
		s.early = append(s.early, it)
		return nil
	}
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

// deliveryOf returns a message frame (or history message) as a Delivery.
func deliveryOf(f protocol.Frame) Delivery {
	t, _ := time.Parse(time.RFC3339Nano, f.Time)
	return Delivery{Topic: f.Topic, ID: f.ID, Sub: f.Sub, Offset: f.Offset, Epoch: f.Epoch, Time: t, Data: f.Data}
}
