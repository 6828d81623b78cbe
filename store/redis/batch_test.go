package redis_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/redis"
)

// counter is a Deliverer that counts deliveries per topic.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) Deliver(m *broker.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[string]int)
	}
	c.n[m.Topic]++
}

func (c *counter) Reset(string, broker.Position, string) {}

func (c *counter) count(topic string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[topic]
}

// batch returns one message per topic, in order, each with its own key.
func batch(topics ...string) []*broker.Message {
	out := make([]*broker.Message, len(topics))
	for i, topic := range topics {
		out[i] = &broker.Message{ID: uuid.NewString(), Topic: topic, Time: time.Now(),
			Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), IdempotencyKey: fmt.Sprintf("key-%d", i)}
	}
	return out
}

func TestBatchIsOneScriptRun(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{URL: srv.URL()})
	if err := s.Publish(context.Background(), batch("b.warm")); err != nil { // loads the script
		t.Fatal(err)
	}
	evalsha := commandCalls(t, srv, "evalsha")
	topics := make([]string, 50)
	for i := range topics {
		topics[i] = fmt.Sprintf("b.one.%d", i%5)
	}
	msgs := batch(topics...)
	if err := s.Publish(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if d := commandCalls(t, srv, "evalsha") - evalsha; d != 1 {
		t.Fatalf("a batch of 50 ran EVALSHA %d times, want once", d)
	}
	for i, m := range msgs {
		if want := uint64(i/5 + 1); m.Offset != want {
			t.Fatalf("message %d on %s has offset %d, want %d", i, m.Topic, m.Offset, want)
		}
	}
}

// A batch that fails part way through stores none of it: a publisher that
// retries it duplicates nothing.
func TestBatchIsAllOrNothing(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{URL: srv.URL()})
	rec := &counter{}
	s.Listen(rec)
	ctx := context.Background()
	// The third topic's offset key holds a value of another type, so
	// storing its message fails.
	if err := srv.Client().Set(ctx, "tidings:{b.bad}:meta", "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	msgs := batch("b.ok1", "b.ok2", "b.bad", "b.ok3")
	if err := s.Publish(ctx, msgs); err == nil {
		t.Fatal("a batch with an unstorable message was accepted")
	}
	for _, topic := range []string{"b.ok1", "b.ok2", "b.ok3"} {
		pos, err := s.Position(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if pos.Offset != 0 {
			t.Fatalf("%s is at offset %d after the failed batch, want 0: part of it was stored", topic, pos.Offset)
		}
	}
	if err := srv.Client().Del(ctx, "tidings:{b.bad}:meta").Err(); err != nil {
		t.Fatal(err)
	}
	retry := batch("b.ok1", "b.ok2", "b.bad", "b.ok3")
	if err := s.Publish(ctx, retry); err != nil {
		t.Fatal(err)
	}
	for i, m := range retry {
		if m.Offset != 1 || m.Duplicate {
			t.Fatalf("retried message %d: offset %d, duplicate %v; want stored at 1", i, m.Offset, m.Duplicate)
		}
	}
}

// An idempotency key lives in Redis with the message: a retry on another
// node, after the first node is gone, answers as the first publish did.
func TestRetryOnAnotherNodeAnswersAsTheFirst(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	first, err := redis.New(redis.Config{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	msgs := batch("idem.a", "idem.b")
	if err := first.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	_ = first.Close() // the node that took the publish is gone

	other := newStore(t, redis.Config{URL: srv.URL()})
	rec := &counter{}
	other.Listen(rec)
	for _, topic := range []string{"idem.a", "idem.b"} {
		if err := other.Watch(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	retry := batch("idem.a", "idem.b")
	if err := other.Publish(ctx, retry); err != nil {
		t.Fatal(err)
	}
	for i, m := range retry {
		f := msgs[i]
		if !m.Duplicate || m.ID != f.ID || m.Offset != f.Offset || m.Epoch != f.Epoch || !m.Time.Equal(f.Time) {
			t.Fatalf("retry %d answered %s@%d/%s %v (duplicate %v), want the first publish's %s@%d/%s %v",
				i, m.ID, m.Offset, m.Epoch, m.Time, m.Duplicate, f.ID, f.Offset, f.Epoch, f.Time)
		}
	}
	// Nothing was relayed for the retry: the next message is the second.
	next := batch("idem.a")
	next[0].IdempotencyKey = "another"
	if err := other.Publish(ctx, next); err != nil {
		t.Fatal(err)
	}
	if next[0].Offset != 2 {
		t.Fatalf("next message has offset %d, want 2", next[0].Offset)
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := rec.count("idem.a"); n < 1 {
			return fmt.Errorf("%d deliveries on idem.a, want at least 1", n)
		}
		return nil
	})
	if n := rec.count("idem.a"); n != 1 {
		t.Fatalf("%d deliveries on idem.a, want only the new message", n)
	}
	// The key expires with the window.
	ttl, err := srv.Client().PTTL(ctx, "tidings:{idem.a}:idem:key-0").Result()
	if err != nil || ttl <= 0 || ttl > 5*time.Minute {
		t.Fatalf("the key's TTL is %v (%v), want at most the 5-minute window", ttl, err)
	}
}

// On a cluster, a batch over topics whose masters are not all up answers
// with what was stored: the messages of the live master have offsets.
func TestClusterBatchReportsWhatWasStored(t *testing.T) {
	cl := redistest.StartCluster(t)
	s := newStore(t, redis.Config{ClusterAddrs: cl.Addrs(), Timeout: 500 * time.Millisecond})
	ctx := context.Background()
	// Two topics whose slots are on different masters.
	var live, dead string
	masterOf := func(topic string) string {
		addr, err := cl.MasterOf("tidings:{" + topic + "}")
		if err != nil {
			t.Fatal(err)
		}
		return addr
	}
	live = "cb.0"
	for i := 1; dead == ""; i++ {
		if topic := fmt.Sprintf("cb.%d", i); masterOf(topic) != masterOf(live) {
			dead = topic
		}
	}
	if err := s.Publish(ctx, batch(live, dead)); err != nil {
		t.Fatalf("the batch with every master up: %v", err)
	}
	for _, n := range cl.Nodes {
		if n.Addr() == masterOf(dead) {
			n.Kill()
		}
	}
	msgs := batch(live, dead)
	for _, m := range msgs {
		m.IdempotencyKey = "second-" + m.IdempotencyKey
	}
	err := s.Publish(ctx, msgs)
	if !errors.Is(err, broker.ErrPartialBatch) {
		t.Fatalf("a batch with one master down returned %v, want a partial batch", err)
	}
	if msgs[0].Offset != 2 || msgs[1].Offset != 0 {
		t.Fatalf("offsets %d and %d, want 2 for the live master's topic and 0 (not stored) for the other", msgs[0].Offset, msgs[1].Offset)
	}
}
