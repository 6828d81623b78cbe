package broker

import (
	"slices"
	"strings"
)

// SubscriptionObserver learns of sessions' exact-topic subscriptions, for
// presence: Subscribed once a subscription's answer is queued, then
// Unsubscribed once when it ends, however it ends (unsubscribe, a refresh
// that no longer allows it, the session's close). Wildcard subscriptions
// are not reported. Calls come from the sessions' goroutines, concurrently,
// and must not block; Subscribed is called under the subscription's lock,
// so that the same subscription's Unsubscribed never overtakes it, and
// must not call back into the session.
type SubscriptionObserver interface {
	// Subscribed reports that s subscribed to topic.
	Subscribed(s *Session, topic string)
	// Unsubscribed reports that s's subscription to topic ended.
	Unsubscribed(s *Session, topic string)
}

type noObserver struct{}

func (noObserver) Subscribed(*Session, string)   {}
func (noObserver) Unsubscribed(*Session, string) {}

// SetObserver sets the observer of exact subscriptions. Call it before any
// session subscribes.
func (b *Broker) SetObserver(o SubscriptionObserver) {
	if o == nil {
		o = noObserver{}
	}
	b.observer = o
}

// observe tells the observer of sub, an exact subscription whose answer
// is queued, unless it has already ended.
func (b *Broker) observe(sub *subscription) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.removed {
		return
	}
	sub.observed = true
	b.observer.Subscribed(sub.sess, sub.pattern)
}

// EachObserved calls fn for every exact subscription the observer has
// been told of and not yet of its end, as a reconfigured observer needs
// (presence turned on for a topic). fn runs under the subscription's
// lock, as Subscribed does, so that its Unsubscribed comes after: it must
// not block nor call back into the session.
func (b *Broker) EachObserved(fn func(s *Session, topic string)) {
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.RLock()
		var subs []*subscription
		for _, h := range sh.hubs {
			subs = append(subs, h.subs...)
		}
		sh.mu.RUnlock()
		for _, sub := range subs {
			sub.mu.Lock()
			if sub.observed && !sub.removed {
				fn(sub.sess, sub.pattern)
			}
			sub.mu.Unlock()
		}
	}
}

// SendToTopic queues event, a frame that is not a message of the topic's
// stream (join, leave; the Encoder's Event encodes it once), to every
// session with an exact subscription to topic whose answer is queued, and
// returns their number. Like Deliver it never blocks: a full queue makes
// its session a slow consumer.
func (b *Broker) SendToTopic(topic string, event any) int {
	sh := b.shard(topic)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	h := sh.hubs[topic]
	if h == nil {
		return 0
	}
	encs := b.encoders()
	var frames [MaxEncodings][]byte
	n := 0
	for _, s := range h.subs {
		if s.state.Load() == subPending {
			continue
		}
		e := s.sess.enc
		if frames[e] == nil {
			frames[e] = encs[e].Event(event)
		}
		s.sess.out.Push(frames[e])
		n++
	}
	return n
}

// TopicCount is a topic and its number of exact subscribers.
type TopicCount struct {
	// Topic is the exact topic.
	Topic string `json:"topic"`
	// Subscribers is how many sessions subscribe to it exactly.
	Subscribers int `json:"subscribers"`
}

// LocalTopics lists this node's topics with exact subscribers that match
// pattern ("" or ">": every topic), busiest first (then by name), at most
// limit of them (0: no limit).
func (b *Broker) LocalTopics(pattern string, limit int) []TopicCount {
	var out []TopicCount
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.RLock()
		for topic, h := range sh.hubs {
			if len(h.subs) > 0 && (pattern == "" || Match(pattern, topic)) {
				out = append(out, TopicCount{Topic: topic, Subscribers: len(h.subs)})
			}
		}
		sh.mu.RUnlock()
	}
	SortTopics(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// SortTopics orders topics busiest first, then by name.
func SortTopics(topics []TopicCount) {
	slices.SortFunc(topics, func(a, b TopicCount) int {
		if a.Subscribers != b.Subscribers {
			return b.Subscribers - a.Subscribers
		}
		return strings.Compare(a.Topic, b.Topic)
	})
}
