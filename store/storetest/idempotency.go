package storetest

// The suite's tests of idempotency keys: a retry with the same key is
// stored once, keys are per topic, and a batch may carry them.

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
)

// keyed returns a message on topic with data and idempotency key.
func keyed(topic, data, key string) *broker.Message {
	return &broker.Message{ID: uuid.NewString(), Topic: topic, Time: time.Now(), Data: json.RawMessage(data), IdempotencyKey: key}
}

// store publishes msgs as one batch.
func store(t *testing.T, s broker.Store, msgs ...*broker.Message) {
	t.Helper()
	if err := s.Publish(context.Background(), msgs); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// sameAnswer fails unless retry answers as first did and is a duplicate.
func sameAnswer(t *testing.T, first, retry *broker.Message) {
	t.Helper()
	if !retry.Duplicate || first.Duplicate {
		t.Fatalf("duplicate flags: first %v, retry %v; want false, true", first.Duplicate, retry.Duplicate)
	}
	if retry.ID != first.ID || retry.Offset != first.Offset || retry.Epoch != first.Epoch || !retry.Time.Equal(first.Time) {
		t.Fatalf("retry answered id %s offset %d epoch %s time %v, want the first publish's %s %d %s %v",
			retry.ID, retry.Offset, retry.Epoch, retry.Time, first.ID, first.Offset, first.Epoch, first.Time)
	}
}

func testIdempotentRetry(t *testing.T, newStore Factory) {
	s, rec := setup(t, newStore, Options{})
	topic := topicName(t, s)
	first := keyed(topic, `{"n":1}`, "key-1")
	store(t, s, first)
	retry := keyed(topic, `{"n":1}`, "key-1")
	store(t, s, retry)
	sameAnswer(t, first, retry)
	next := keyed(topic, `{"n":2}`, "key-2")
	store(t, s, next)
	if next.Duplicate || next.Offset != first.Offset+1 {
		t.Fatalf("a new key got offset %d (duplicate %v), want %d: the retry used an offset", next.Offset, next.Duplicate, first.Offset+1)
	}
	got := rec.wait(t, topic, 2)
	if len(got) != 2 || got[0].ID != first.ID || got[1].ID != next.ID {
		t.Fatalf("delivered %d messages, want the first publish and the next one only", len(got))
	}
	msgs, _, ok, err := s.Since(context.Background(), topic, broker.Position{Epoch: first.Epoch})
	if err != nil || !ok || len(msgs) != 2 {
		t.Fatalf("history holds %d messages (recovered %v, err %v), want 2", len(msgs), ok, err)
	}
}

func testIdempotencyPerTopic(t *testing.T, newStore Factory) {
	s, _ := setup(t, newStore, Options{})
	a, b := topicName(t, s), topicName(t, s)
	first := keyed(a, "1", "shared")
	store(t, s, first)
	other := keyed(b, "1", "shared")
	store(t, s, other)
	if other.Duplicate || other.Offset != 1 {
		t.Fatalf("the same key on another topic: offset %d, duplicate %v; want stored at 1", other.Offset, other.Duplicate)
	}
	plain := []*broker.Message{keyed(a, "2", ""), keyed(a, "3", "")}
	store(t, s, plain...)
	if plain[0].Duplicate || plain[1].Duplicate || plain[1].Offset != 3 {
		t.Fatalf("messages without a key: offsets %d, %d; want 2, 3, none a duplicate", plain[0].Offset, plain[1].Offset)
	}
}

func testIdempotentBatch(t *testing.T, newStore Factory) {
	s, rec := setup(t, newStore, Options{})
	topic := topicName(t, s)
	first := keyed(topic, "1", "a")
	store(t, s, first)
	batch := []*broker.Message{keyed(topic, "1", "a"), keyed(topic, "2", "b"), keyed(topic, "2", "b")}
	store(t, s, batch...)
	sameAnswer(t, first, batch[0])
	if batch[1].Duplicate || batch[1].Offset != 2 {
		t.Fatalf("new key in a batch: offset %d, duplicate %v; want stored at 2", batch[1].Offset, batch[1].Duplicate)
	}
	sameAnswer(t, batch[1], batch[2])
	// The whole batch retried answers as before and stores nothing.
	again := []*broker.Message{keyed(topic, "1", "a"), keyed(topic, "2", "b")}
	store(t, s, again...)
	sameAnswer(t, first, again[0])
	sameAnswer(t, batch[1], again[1])
	marker := keyed(topic, "3", "")
	store(t, s, marker)
	if marker.Offset != 3 {
		t.Fatalf("the next message got offset %d, want 3", marker.Offset)
	}
	if got := rec.wait(t, topic, 3); len(got) != 3 || got[2].ID != marker.ID {
		t.Fatalf("delivered %d messages, want exactly 3 ending with the marker", len(got))
	}
}
