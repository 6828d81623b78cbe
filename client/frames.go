package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// errResubscribe ends a connection whose subscribe the broker could not
// serve for now (its store is down, say): the client reconnects with
// backoff and tries again.
type errResubscribe struct{ e *Error }

func (e errResubscribe) Error() string { return "resubscribing later: " + e.e.Error() }
func (e errResubscribe) Unwrap() error { return e.e }

// handle handles one frame from the broker.
func (s *Subscription) handle(c *conn, msg []byte) error {
	var f wireFrame
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

func (s *Subscription) onMessage(f wireFrame) error {
	pos := Position{Offset: f.Offset, Epoch: f.Epoch}
	if f.Sub == "" {
		p := s.pats[f.Topic]
		if p == nil || p.wild || p.state != active {
			return nil
		}
		if p.has && p.pos.Epoch == f.Epoch {
			if f.Offset <= p.pos.Offset {
				return nil // delivered already
			}
			if f.Offset > p.pos.Offset+1 {
				s.log.Warn("tidings: offsets skipped without a reset", "topic", f.Topic, "after", p.pos.Offset, "got", f.Offset)
			}
		}
		p.pos, p.has = pos, true
	} else {
		p := s.pats[f.Sub]
		if p == nil || !p.wild || p.state != active {
			return nil
		}
		if ex := s.pats[f.Topic]; ex != nil && !ex.wild {
			return nil // the exact subscription delivers it
		}
		if old, ok := s.wpos[f.Topic]; ok && old.Epoch == f.Epoch && f.Offset <= old.Offset {
			return nil // delivered already, through another pattern
		}
		s.wpos[f.Topic] = pos
	}
	return s.enqueue(item{kind: itemDelivery, d: f.delivery()})
}

func (s *Subscription) onReset(f wireFrame) error {
	pos := Position{Offset: f.Offset, Epoch: f.Epoch}
	if f.Sub == "" {
		p := s.pats[f.Topic]
		if p == nil || p.wild || p.state != active || p.has && p.pos == pos {
			return nil
		}
		p.pos, p.has = pos, true
	} else {
		p := s.pats[f.Sub]
		if p == nil || !p.wild || p.state != active {
			return nil
		}
		if ex := s.pats[f.Topic]; ex != nil && !ex.wild {
			return nil // the exact subscription gets its own
		}
		if old, ok := s.wpos[f.Topic]; ok && old == pos {
			return nil // nothing missed: another pattern told already
		}
		s.wpos[f.Topic] = pos
	}
	return s.enqueue(item{kind: itemReset, reset: Reset{Topic: f.Topic, Sub: f.Sub, Offset: f.Offset, Epoch: f.Epoch, Reason: f.Reason}})
}

func (s *Subscription) onSubscribed(f wireFrame) error {
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
	s.checkReady()
	return err
}

func (s *Subscription) onUnsubscribed(f wireFrame) error {
	if f.Ref != "" {
		return nil // the client sends no unsubscribe
	}
	p := s.pats[f.Topic]
	if p == nil {
		return nil
	}
	s.drop(p)
	s.checkReady()
	return s.enqueue(item{kind: itemUnsubscribed, pattern: f.Topic,
		err: &Error{Code: CodeForbidden, Message: "the broker ended the subscription to " + f.Topic}})
}

func (s *Subscription) onError(f wireFrame) error {
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
	case CodeUnavailable, CodeRateLimited, CodeInternal:
		return errResubscribe{e}
	}
	s.drop(p)
	return s.enqueue(item{kind: itemUnsubscribed, pattern: name, err: e})
}

// enqueue hands it to the pump, waiting while the queue is full
// (backpressure). A full queue before Subscribe has returned lets it
// return, since nobody can read C before.
func (s *Subscription) enqueue(it item) error {
	select {
	case s.queue <- it:
		return nil
	default:
	}
	s.markReady()
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

// wireFrame is a frame from the broker; the fields its type has are set.
type wireFrame struct {
	Type      string          `json:"type"`
	Ref       string          `json:"ref"`
	Topic     string          `json:"topic"`
	Sub       string          `json:"sub"`
	ID        string          `json:"id"`
	Offset    uint64          `json:"offset"`
	Epoch     string          `json:"epoch"`
	Time      string          `json:"time"`
	Data      json.RawMessage `json:"data"`
	Recovered bool            `json:"recovered"`
	Reason    string          `json:"reason"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Session   string          `json:"session"`
	Node      string          `json:"node"`
	Heartbeat float64         `json:"heartbeat"`
}

// delivery returns a message frame (or history message) as a Delivery.
func (f wireFrame) delivery() Delivery {
	t, _ := time.Parse(time.RFC3339Nano, f.Time)
	return Delivery{Topic: f.Topic, ID: f.ID, Sub: f.Sub, Offset: f.Offset, Epoch: f.Epoch, Time: t, Data: f.Data}
}
