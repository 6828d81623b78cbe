package storetest

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
)

// topicHistory is a store's Config.HistoryFor whose answers a test sets
// per topic, and changes as a reload does.
type topicHistory struct {
	mu sync.Mutex
	m  map[string][2]int64 // topic → size, TTL (0: the store's own)
}

func (h *topicHistory) set(topic string, size int, ttl time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.m[topic] = [2]int64{int64(size), int64(ttl)}
}

func (h *topicHistory) historyFor(topic string) (int, time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := h.m[topic]
	return int(v[0]), time.Duration(v[1])
}

// RunHistoryFor runs the tests of a history per topic (the config file's
// namespaces) against stores made by newStore, which must pass
// Options.HistoryFor to the store.
func RunHistoryFor(t *testing.T, newStore Factory) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"EachTopicKeepsItsOwnSize", testOwnSize},
		{"EachTopicExpiresAfterItsOwnTTL", testOwnTTL},
		{"ASmallerSizeAppliesAtOnce", testShrink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore)
		})
	}
}

// setupHistory makes a store whose history is 3 messages for 5 minutes,
// but for what h sets.
func setupHistory(t *testing.T, newStore Factory) (broker.Store, *topicHistory) {
	t.Helper()
	h := &topicHistory{m: map[string][2]int64{}}
	s, _ := setup(t, newStore, Options{HistorySize: 3, HistoryFor: h.historyFor})
	return s, h
}

// recentLen is how many messages Recent returns of topic.
func recentLen(t *testing.T, s broker.Store, topic string) int {
	t.Helper()
	msgs, _, err := s.Recent(context.Background(), topic, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(msgs)
}

// recovers reports whether Since(offset) of topic recovers.
func recovers(t *testing.T, s broker.Store, topic string, offset uint64, epoch string) bool {
	t.Helper()
	_, _, ok, err := s.Since(context.Background(), topic, broker.Position{Offset: offset, Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func testOwnSize(t *testing.T, newStore Factory) {
	s, h := setupHistory(t, newStore)
	big, small := topicName(t, s), topicName(t, s)
	h.set(big, 10, 0)
	// One batch, both topics: on a single Redis one script run, each
	// message trimmed to its own topic's size.
	msgs := append(publishBatchOf(big, numbers(12)), publishBatchOf(small, numbers(12))...)
	if err := s.Publish(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if n := recentLen(t, s, big); n != 10 {
		t.Errorf("the topic of size 10 keeps %d messages", n)
	}
	if n := recentLen(t, s, small); n != 3 {
		t.Errorf("the topic of the store's size 3 keeps %d messages", n)
	}
	be, se := msgs[0].Epoch, msgs[12].Epoch
	if !recovers(t, s, big, 2, be) || recovers(t, s, big, 1, be) {
		t.Errorf("the topic of size 10 of 12: Since(2) must recover, Since(1) not")
	}
	if !recovers(t, s, small, 9, se) || recovers(t, s, small, 8, se) {
		t.Errorf("the topic of size 3 of 12: Since(9) must recover, Since(8) not")
	}
}

func testOwnTTL(t *testing.T, newStore Factory) {
	s, h := setupHistory(t, newStore)
	short, long := topicName(t, s), topicName(t, s)
	const ttl = 300 * time.Millisecond
	h.set(short, 0, ttl)
	sent := publish(t, s, short, "1")
	kept := publish(t, s, long, "1")
	deadline := time.Now().Add(10 * time.Second)
	for recovers(t, s, short, 0, sent[0].Epoch) {
		if time.Now().After(deadline) {
			t.Fatalf("the topic's message is still in history long after its TTL of %v", ttl)
		}
		time.Sleep(20 * time.Millisecond) // polling a clock-driven expiry: there is no event to wait on
	}
	if time.Since(sent[0].Time) < ttl {
		t.Fatal("history lost a message younger than its topic's TTL")
	}
	if !recovers(t, s, long, 0, kept[0].Epoch) || recentLen(t, s, long) != 1 {
		t.Error("a topic of the store's TTL of 5 minutes lost its message")
	}
}

func testShrink(t *testing.T, newStore Factory) {
	s, h := setupHistory(t, newStore)
	topic := topicName(t, s)
	h.set(topic, 10, 0)
	sent := publish(t, s, topic, numbers(10)...)
	epoch := sent[0].Epoch
	if !recovers(t, s, topic, 0, epoch) {
		t.Fatal("Since(0) of 10 messages with a size of 10 does not recover")
	}
	h.set(topic, 2, 0)
	for _, when := range []string{"before the next publish", "after it"} {
		if n := recentLen(t, s, topic); n != 2 {
			t.Errorf("%s: Recent lists %d messages, want the new size's 2", when, n)
		}
		last := sent[len(sent)-1].Offset
		if !recovers(t, s, topic, last-2, epoch) || recovers(t, s, topic, last-3, epoch) {
			t.Errorf("%s: Since(%d) must recover and Since(%d) not", when, last-2, last-3)
		}
		sent = append(sent, publish(t, s, topic, "11")...)
	}
}

// publishBatchOf returns the messages of a batch to topic, not yet
// published.
func publishBatchOf(topic string, data []string) []*broker.Message {
	msgs := make([]*broker.Message, len(data))
	for i, d := range data {
		msgs[i] = &broker.Message{ID: uuid.NewString(), Topic: topic, Time: time.Now(), Data: json.RawMessage(d)}
	}
	return msgs
}
