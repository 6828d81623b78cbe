package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/tidings-io/tidings/broker"
)

// Publish stores msgs with the publish script. On a single Redis the
// whole batch is one script run, stored whole or not at all. On a cluster
// a script runs per topic (a topic's keys share one slot); when only some
// of them succeed the error wraps broker.ErrPartialBatch and the stored
// messages have their Offset set. Concurrent publishes share round trips
// (Config.MaxCoalesce), each in script runs of its own, so that one
// failing never fails another. A timed-out run may have been stored: a
// retry with the same idempotency keys answers as it did.
func (s *Store) Publish(ctx context.Context, msgs []*broker.Message) error {
	return s.red.err(s.publish(ctx, msgs))
}

// publish is Publish, its error not yet redacted.
func (s *Store) publish(ctx context.Context, msgs []*broker.Message) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis: publishing: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	describeAppend(ctx, s.cluster != nil)
	c := &pubCall{msgs: len(msgs), wake: make(chan struct{}, 1)}
	groups := [][]*broker.Message{msgs}
	if s.cluster != nil {
		groups = groupByTopic(msgs)
	}
	for _, g := range groups {
		r, size, err := s.scriptRun(g)
		if err != nil {
			return err
		}
		c.runs = append(c.runs, r)
		c.bytes += size
	}
	return s.submit(ctx, c)
}

// groupByTopic splits msgs by topic, keeping their order within a topic.
func groupByTopic(msgs []*broker.Message) [][]*broker.Message {
	index := make(map[string]int)
	var groups [][]*broker.Message
	for _, m := range msgs {
		i, ok := index[m.Topic]
		if !ok {
			i = len(groups)
			index[m.Topic] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], m)
	}
	return groups
}

// scriptRun prepares the publish script's run for msgs, whose keys must
// share a slot on a cluster, and returns it with the size of the bodies.
func (s *Store) scriptRun(msgs []*broker.Message) (*scriptRun, int, error) {
	pub := "PUBLISH"
	if s.cluster != nil {
		pub = "SPUBLISH"
	}
	keys := make([]string, 0, 4*len(msgs))
	args := make([]any, 0, 3+8*len(msgs))
	args = append(args, newEpoch(), pub, ms(s.cfg.IdempotencyWindow))
	size := 0
	for i, m := range msgs {
		body, err := encodeBody(m)
		if err != nil {
			return nil, 0, fmt.Errorf("redis: encoding message %d: %w", i, err)
		}
		size += len(body)
		k := s.keys(m.Topic)
		keys = append(keys, k[0], k[1], k[2], s.idempotencyKey(m.Topic, m.IdempotencyKey))
		keyed, wild := "", ""
		if m.IdempotencyKey != "" {
			keyed = "1"
		}
		if s.cluster != nil {
			wild = s.wildcardChannel(m.Topic) // or "": see withWildcards
		}
		hsize, ttl := s.history(m.Topic)
		args = append(args, body, keyed, wild, m.ID, strconv.FormatInt(m.Time.UnixNano(), 10),
			hsize, ms(ttl), ms(s.metaTTL(ttl)))
	}
	return &scriptRun{msgs: msgs, keys: keys, args: args}, size, nil
}

// withWildcards settles, as its round trip leaves, whether the messages
// of r are also published on the wildcard channels: only while some node
// has wildcard subscriptions (wildcardsSeen). Deciding at the last
// moment, not when the publish was called, keeps a publish that waited
// in a queue from missing a wildcard watch that began meanwhile.
func (s *Store) withWildcards(r *scriptRun, on bool) {
	if on {
		return
	}
	for i := range r.msgs {
		r.args[3+8*i+2] = ""
	}
}

// applyPositions fills in the positions of msgs from the publish
// script's result. When the result does not parse none of msgs is marked
// stored.
func applyPositions(msgs []*broker.Message, val any) error {
	res, ok := val.([]any)
	if !ok || len(res) != len(msgs) {
		return errEnvelope
	}
	type answer struct {
		offset uint64
		epoch  string
		first  *broker.Message // the first publish's id and time, for a known key
	}
	answers := make([]answer, len(msgs))
	for i, r := range res {
		entry, _ := r.([]any)
		off, epoch, err := position(entry)
		if err != nil {
			return err
		}
		answers[i] = answer{offset: off, epoch: epoch}
		if len(entry) == 4 {
			id, _ := entry[2].(string)
			ns, err := strconv.ParseInt(fmt.Sprint(entry[3]), 10, 64)
			if id == "" || err != nil {
				return errEnvelope
			}
			answers[i].first = &broker.Message{ID: id, Time: time.Unix(0, ns)}
		}
	}
	for i, m := range msgs {
		a := answers[i]
		m.Offset, m.Epoch = a.offset, a.epoch
		if a.first != nil {
			m.ID, m.Time, m.Duplicate = a.first.ID, a.first.Time, true
		}
	}
	return nil
}

// idempotencyKey is where a topic remembers a publish's idempotency key;
// it shares the topic's hash tag. A message without a key gets the bare
// prefix, which the script never reads or writes.
func (s *Store) idempotencyKey(topic, key string) string {
	return s.cfg.Prefix + "{" + topic + "}:idem:" + key
}

// history returns the history size and TTL of topic: Config.HistoryFor's,
// or HistorySize and HistoryTTL.
func (s *Store) history(topic string) (int, time.Duration) {
	return s.cfg.HistoryFor.Bounds(topic, s.cfg.HistorySize, s.cfg.HistoryTTL)
}

// metaTTL is how long the offset and epoch of a topic whose history
// lives ttl outlive its last use: MetaTTL, or ttl when longer.
func (s *Store) metaTTL(ttl time.Duration) time.Duration { return max(s.cfg.MetaTTL, ttl) }
