package redis_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
	"github.com/tidings-io/tidings/store/redis"
)

// sequence is a Deliverer that keeps every delivery, in order.
type sequence struct {
	mu   sync.Mutex
	msgs []*broker.Message
}

func (s *sequence) Deliver(m *broker.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
}

func (s *sequence) Reset(string, broker.Position, string) {}

// of returns the deliveries on topic, in order.
func (s *sequence) of(topic string) []*broker.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*broker.Message
	for _, m := range s.msgs {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// waitFor waits until topic has want deliveries and checks that they are
// offsets 1…want with the data published, each once.
func (s *sequence) waitFor(t *testing.T, topic string, published []*broker.Message) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, func() error {
		if n := len(s.of(topic)); n < len(published) {
			return fmt.Errorf("%d of %d messages on %s delivered", n, len(published), topic)
		}
		return nil
	})
	got := s.of(topic)
	if len(got) != len(published) {
		t.Fatalf("%d deliveries on %s, want %d", len(got), topic, len(published))
	}
	for i, m := range got {
		p := published[i]
		if m.Offset != uint64(i+1) || m.ID != p.ID || string(m.Data) != string(p.Data) || m.Epoch != p.Epoch || !m.Time.Equal(p.Time) {
			t.Fatalf("delivery %d on %s is %s@%d %s, want %s@%d %s", i, topic, m.ID, m.Offset, m.Data, p.ID, i+1, p.Data)
		}
	}
}

// onTopics returns n messages alternating over topics, with data of size
// bytes at least.
func onTopics(n, size int, topics ...string) []*broker.Message {
	out := make([]*broker.Message, n)
	for i := range out {
		pad := strings.Repeat("x", max(size-16, 0))
		out[i] = &broker.Message{ID: uuid.NewString(), Topic: topics[i%len(topics)], Time: time.Now(),
			Data: json.RawMessage(fmt.Sprintf(`{"n":%d,"p":"%s"}`, i, pad))}
	}
	return out
}

func only(msgs []*broker.Message, topic string) []*broker.Message {
	var out []*broker.Message
	for _, m := range msgs {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// The messages of a batch that share a topic travel to other nodes as
// one Redis message, which the receiving node splits in offset order.
func TestBatchOnATopicIsRelayedAsOneMessage(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	pub := newStore(t, redis.Config{URL: srv.URL()})
	sub := newStore(t, redis.Config{URL: srv.URL()})
	seq := &sequence{}
	sub.Listen(seq)
	for _, topic := range []string{"rb.a", "rb.b", "rb.c"} {
		if err := sub.Watch(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, onTopics(1, 0, "rb.warm")); err != nil { // loads the script
		t.Fatal(err)
	}
	before := commandCalls(t, srv, "publish")
	msgs := append(onTopics(50, 40, "rb.a", "rb.b"), onTopics(1, 40, "rb.c")...)
	if err := pub.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if n := commandCalls(t, srv, "publish") - before; n != 3 {
		t.Fatalf("a batch over three topics made %d PUBLISH calls, want 3", n)
	}
	for _, topic := range []string{"rb.a", "rb.b", "rb.c"} {
		seq.waitFor(t, topic, only(msgs, topic))
	}
}

// A batch larger than one relayed message may carry is relayed in
// several, in order, none of them over the bound.
func TestLargeBatchIsRelayedInBoundedMessages(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	pub := newStore(t, redis.Config{URL: srv.URL()})
	raw := srv.Client().Subscribe(ctx, "tidings:{rl.a}")
	defer raw.Close()
	if _, err := raw.Receive(ctx); err != nil { // the confirmation
		t.Fatal(err)
	}
	sub := newStore(t, redis.Config{URL: srv.URL()})
	seq := &sequence{}
	sub.Listen(seq)
	if err := sub.Watch(ctx, "rl.a"); err != nil {
		t.Fatal(err)
	}
	msgs := onTopics(12, 60<<10, "rl.a") // 720 KiB
	if err := pub.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	seq.waitFor(t, "rl.a", msgs)
	carried := 0
	for carried < len(msgs) {
		m, err := raw.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Payload) > 300<<10 {
			t.Fatalf("a relayed message of %d bytes, want at most about 256 KiB", len(m.Payload))
		}
		if strings.HasPrefix(m.Payload, "B") {
			carried += strings.Count(m.Payload, `{"id":`)
		} else {
			carried++
		}
	}
	if carried != len(msgs) {
		t.Fatalf("relayed messages carried %d messages, want %d", carried, len(msgs))
	}
}

// On a cluster each topic's messages of a batch are one SPUBLISH on its
// master.
func TestClusterBatchOnATopicIsRelayedAsOneMessage(t *testing.T) {
	cl := redistest.StartCluster(t)
	ctx := context.Background()
	pub := newStore(t, redis.Config{ClusterAddrs: cl.Addrs()})
	sub := newStore(t, redis.Config{ClusterAddrs: cl.Addrs()})
	seq := &sequence{}
	sub.Listen(seq)
	topics := []string{"rc.a", "rc.b", "rc.c", "rc.d"}
	for _, topic := range topics {
		if err := sub.Watch(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, onTopics(len(topics), 0, topics...)); err != nil { // loads the script on every master
		t.Fatal(err)
	}
	spublish := func() int {
		n := 0
		for _, node := range cl.Nodes {
			n += commandCalls(t, node, "spublish")
		}
		return n
	}
	before := spublish()
	msgs := onTopics(80, 20, topics...)
	if err := pub.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if n := spublish() - before; n != len(topics) {
		t.Fatalf("a batch over %d topics made %d SPUBLISH calls, want one per topic", len(topics), n)
	}
	for _, topic := range topics {
		got := only(msgs, topic)
		// The warm-up took offset 1 on each topic.
		testkit.Eventually(t, 10*time.Second, func() error {
			if n := len(seq.of(topic)); n < len(got)+1 {
				return fmt.Errorf("%d of %d messages on %s delivered", n, len(got)+1, topic)
			}
			return nil
		})
		for i, m := range seq.of(topic)[1:] {
			if m.Offset != uint64(i+2) || m.ID != got[i].ID {
				t.Fatalf("delivery %d on %s is %s@%d, want %s@%d", i, topic, m.ID, m.Offset, got[i].ID, i+2)
			}
		}
	}
}

// A topic's position and TTLs are written once per script run, after
// its last message: the next run continues from there.
func TestBatchOnATopicKeepsPositionAndTTLs(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	s := newStore(t, redis.Config{URL: srv.URL(), HistoryTTL: time.Minute})
	first := onTopics(30, 10, "pt.a")
	first[7].IdempotencyKey, first[8].IdempotencyKey = "same", "same" // stored once
	if err := s.Publish(ctx, first); err != nil {
		t.Fatal(err)
	}
	if !first[8].Duplicate || first[8].Offset != first[7].Offset || first[9].Offset != first[7].Offset+1 || first[29].Offset != 29 {
		t.Fatalf("offsets %d %d %d … %d (duplicate %v), want 8 8 9 … 29", first[7].Offset, first[8].Offset, first[9].Offset, first[29].Offset, first[8].Duplicate)
	}
	c := srv.Client()
	if off, err := c.HGet(ctx, "tidings:{pt.a}:meta", "offset").Int(); err != nil || off != 29 {
		t.Fatalf("meta offset %d (%v), want 29", off, err)
	}
	for key, most := range map[string]time.Duration{"tidings:{pt.a}:log": time.Minute, "tidings:{pt.a}:meta": 25 * time.Hour} {
		if ttl, err := c.PTTL(ctx, key).Result(); err != nil || ttl <= 0 || ttl > most {
			t.Fatalf("%s has TTL %v (%v), want one of at most %v", key, ttl, err, most)
		}
	}
	next := onTopics(1, 10, "pt.a")
	if err := s.Publish(ctx, next); err != nil {
		t.Fatal(err)
	}
	if next[0].Offset != 30 || next[0].Epoch != first[0].Epoch {
		t.Fatalf("next message at %d in %s, want 30 in %s", next[0].Offset, next[0].Epoch, first[0].Epoch)
	}
	if n, err := c.XLen(ctx, "tidings:{pt.a}:log").Result(); err != nil || n != 30 {
		t.Fatalf("history holds %d entries (%v), want 30", n, err)
	}
}
