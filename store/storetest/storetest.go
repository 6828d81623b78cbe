// Package storetest is the conformance suite every broker.Store must pass:
// offsets, epochs, delivery order, history bounds and resume. Each backend's
// tests call Run with a factory for fresh stores.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
)

// Options are the history bounds a factory must give the store it makes.
type Options struct {
	// HistorySize is how many messages per topic history keeps.
	HistorySize int
	// HistoryTTL is how long a message stays in history.
	HistoryTTL time.Duration
	// HistoryFor, for RunHistoryFor, gives topics a history of their own
	// (the stores' Config.HistoryFor); nil for Run.
	HistoryFor func(topic string) (size int, ttl time.Duration)
}

// Factory returns a fresh, empty store with opts; the factory registers its
// own cleanup with t.
type Factory func(t *testing.T, opts Options) broker.Store

// Run runs the whole suite against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"OffsetsStartAtOneAndAreGaplessPerTopic", testOffsets},
		{"PositionOfNewTopicIsZeroWithAStableEpoch", testPositionNewTopic},
		{"PublishedMessagesCarryThePositionEpoch", testEpochMatchesPosition},
		{"EveryMessageIsDeliveredOnceInOffsetOrder", testDeliveryOrder},
		{"ConcurrentPublishersGetOneSequence", testConcurrentPublishers},
		{"BatchIsStoredInOrder", testBatch},
		{"SinceReplaysTheMessagesAfterTheOffset", testSinceReplays},
		{"SinceAtTheCurrentOffsetRecoversNothing", testSinceCurrent},
		{"SinceWithAnotherEpochIsNotRecovered", testSinceWrongEpoch},
		{"SinceFromTheFutureIsNotRecovered", testSinceFuture},
		{"SinceBeyondHistorySizeIsNotRecovered", testSinceTooOld},
		{"HistoryKeepsTheLastSizeMessages", testHistoryKeepsLast},
		{"RecentReturnsTheLastMessagesInHistory", testRecent},
		{"MessagesExpireAfterTheTTL", testTTL},
		{"CancelledContextIsAnError", testCancelled},
		{"RetryWithAnIdempotencyKeyIsStoredOnce", testIdempotentRetry},
		{"IdempotencyKeysArePerTopic", testIdempotencyPerTopic},
		{"IdempotencyKeysWithinABatch", testIdempotentBatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore)
		})
	}
}

// recorder is a Deliverer that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []*broker.Message
	more chan struct{}
}

func newRecorder() *recorder { return &recorder{more: make(chan struct{}, 1)} }

// Deliver records m.
func (r *recorder) Deliver(m *broker.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

// Reset records nothing: the suite checks resets through Deliver order.
func (r *recorder) Reset(topic string, pos broker.Position, reason string) {}

// wait returns the first n deliveries to topic ("" for all), failing the
// test if they do not arrive within 10 seconds.
func (r *recorder) wait(t *testing.T, topic string, n int) []*broker.Message {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		var got []*broker.Message
		for _, m := range r.msgs {
			if topic == "" || m.Topic == topic {
				got = append(got, m)
			}
		}
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("got %d deliveries on %q, want %d", len(got), topic, n)
		}
	}
}

// setup makes a store with a recorder attached.
func setup(t *testing.T, newStore Factory, opts Options) (broker.Store, *recorder) {
	t.Helper()
	if opts.HistorySize == 0 {
		opts.HistorySize = 100
	}
	if opts.HistoryTTL == 0 {
		opts.HistoryTTL = 5 * time.Minute
	}
	s := newStore(t, opts)
	rec := newRecorder()
	s.Listen(rec)
	return s, rec
}

// topicName returns a topic unique to this test, so stores may share a
// backend. When the store relays only watched topics, the topic is
// watched for the rest of the test.
func topicName(t *testing.T, s broker.Store) string {
	t.Helper()
	topic := "storetest." + uuid.NewString()[:8]
	if w, ok := s.(broker.Watcher); ok {
		if err := w.Watch(context.Background(), topic); err != nil {
			t.Fatalf("Watch(%s): %v", topic, err)
		}
		t.Cleanup(func() { w.Unwatch(topic) })
	}
	return topic
}

// publish stores one message per data value on topic and returns them.
func publish(t *testing.T, s broker.Store, topic string, data ...string) []*broker.Message {
	t.Helper()
	msgs := make([]*broker.Message, len(data))
	for i, d := range data {
		msgs[i] = &broker.Message{ID: uuid.NewString(), Topic: topic, Time: time.Now(), Data: json.RawMessage(d)}
	}
	if err := s.Publish(context.Background(), msgs); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return msgs
}

// position returns topic's position in s.
func position(t *testing.T, s broker.Store, topic string) broker.Position {
	t.Helper()
	p, err := s.Position(context.Background(), topic)
	if err != nil {
		t.Fatalf("Position: %v", err)
	}
	return p
}

// numbers returns n JSON numbers as data values.
func numbers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(i + 1)
	}
	return out
}

func testOffsets(t *testing.T, newStore Factory) {
	s, _ := setup(t, newStore, Options{})
	a, b := topicName(t, s), topicName(t, s)
	for i, m := range publish(t, s, a, numbers(5)...) {
		if m.Offset != uint64(i+1) {
			t.Fatalf("message %d on %s has offset %d, want %d", i, a, m.Offset, i+1)
		}
	}
	if m := publish(t, s, b, "1")[0]; m.Offset != 1 {
		t.Fatalf("first message on another topic has offset %d, want 1", m.Offset)
	}
	if m := publish(t, s, a, "6")[0]; m.Offset != 6 {
		t.Fatalf("sixth message has offset %d, want 6", m.Offset)
	}
}

func testPositionNewTopic(t *testing.T, newStore Factory) {
	s, _ := setup(t, newStore, Options{})
	topic := topicName(t, s)
	p1 := position(t, s, topic)
	if p1.Offset != 0 || p1.Epoch == "" {
		t.Fatalf("Position of a new topic = %+v, want offset 0 and an epoch", p1)
	}
	p2 := position(t, s, topic)
	if p2 != p1 {
		t.Fatalf("Position changed with no publish: %+v then %+v", p1, p2)
	}
}

func testEpochMatchesPosition(t *testing.T, newStore Factory) {
	s, _ := setup(t, newStore, Options{})
	topic := topicName(t, s)
	before := position(t, s, topic)
	m := publish(t, s, topic, "1")[0]
	if m.Epoch != before.Epoch {
		t.Fatalf("message epoch %q, position epoch %q", m.Epoch, before.Epoch)
	}
	after := position(t, s, topic)
	if after != (broker.Position{Offset: 1, Epoch: before.Epoch}) {
		t.Fatalf("Position after one publish = %+v", after)
	}
}

func testDeliveryOrder(t *testing.T, newStore Factory) {
	s, rec := setup(t, newStore, Options{})
	topic := topicName(t, s)
	sent := publish(t, s, topic, numbers(50)...)
	got := rec.wait(t, topic, 50)
	for i, m := range got {
		if m.Offset != uint64(i+1) || m.ID != sent[i].ID || string(m.Data) != string(sent[i].Data) {
			t.Fatalf("delivery %d = offset %d id %s data %s, want offset %d id %s data %s",
				i, m.Offset, m.ID, m.Data, i+1, sent[i].ID, sent[i].Data)
		}
	}
	if len(got) != 50 {
		t.Fatalf("%d deliveries, want exactly 50", len(got))
	}
}

func testConcurrentPublishers(t *testing.T, newStore Factory) {
	s, rec := setup(t, newStore, Options{HistorySize: 1000})
	topic := topicName(t, s)
	const publishers, each = 8, 50
	var wg sync.WaitGroup
	for p := 0; p < publishers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				publish(t, s, topic, fmt.Sprint(i))
			}
		}()
	}
	wg.Wait()
	got := rec.wait(t, topic, publishers*each)
	for i, m := range got {
		if m.Offset != uint64(i+1) {
			t.Fatalf("delivery %d has offset %d: deliveries are not one gapless ordered sequence", i, m.Offset)
		}
	}
}

func testBatch(t *testing.T, newStore Factory) {
	s, rec := setup(t, newStore, Options{})
	a, b := topicName(t, s), topicName(t, s)
	msgs := []*broker.Message{
		{ID: uuid.NewString(), Topic: a, Time: time.Now(), Data: json.RawMessage(`1`)},
		{ID: uuid.NewString(), Topic: b, Time: time.Now(), Data: json.RawMessage(`2`)},
		{ID: uuid.NewString(), Topic: a, Time: time.Now(), Data: json.RawMessage(`3`)},
	}
	if err := s.Publish(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	want := []uint64{1, 1, 2}
	for i, m := range msgs {
		if m.Offset != want[i] || m.Epoch == "" {
			t.Fatalf("batch message %d: offset %d epoch %q, want offset %d and an epoch", i, m.Offset, m.Epoch, want[i])
		}
	}
	if got := rec.wait(t, a, 2); got[0].ID != msgs[0].ID || got[1].ID != msgs[2].ID {
		t.Fatalf("batch delivered out of order on %s", a)
	}
}

func testSinceReplays(t *testing.T, newStore Factory) {
	s, _ := setup(t, newStore, Options{})
	topic := topicName(t, s)
	sent := publish(t, s, topic, numbers(10)...)
	msgs, pos, ok, err := s.Since(context.Background(), topic, broker.Position{Offset: 4, Epoch: sent[0].Epoch})
	if err != nil || !ok {
		t.Fatalf("Since = recovered %v, err %v; want recovered", ok, err)
	}
	if pos != (broker.Position{Offset: 10, Epoch: sent[0].Epoch}) {
		t.Fatalf("Since position = %+v, want offset 10", pos)
	}
	if len(msgs) != 6 {
		t.Fatalf("Since replayed %d messages, want 6", len(msgs))
	}
	for i, m := range msgs {
		w := sent[4+i]
		if m.Offset != w.Offset || m.ID != w.ID || string(m.Data) != string(w.Data) || !m.Time.Equal(w.Time) || m.Topic != topic {
			t.Fatalf("replayed %d = %+v, want %+v", i, m, w)
		}
	}
}

func testSinceCurrent(t *testing.T, newStore Factory) {
	s, _ := setup(t, newStore, Options{})
	topic := topicName(t, s)
	pos := position(t, s, topic)
	msgs, _, ok, err := s.Since(context.Background(), topic, pos)
	if err != nil || !ok || len(msgs) != 0 {
		t.Fatalf("Since(current) on a new topic = %d msgs, recovered %v, err %v; want 0, true", len(msgs), ok, err)
	}
	sent := publish(t, s, topic, "1", "2")
	msgs, _, ok, err = s.Since(context.Background(), topic, broker.Position{Offset: 2, Epoch: sent[0].Epoch})
	if err != nil || !ok || len(msgs) != 0 {
		t.Fatalf("Since(current) = %d msgs, recovered %v, err %v; want 0, true", len(msgs), ok, err)
	}
}

func testSinceWrongEpoch(t *testing.T, newStore Factory) {
	s, _ := setup(t, newStore, Options{})
	topic := topicName(t, s)
	publish(t, s, topic, "1", "2")
	msgs, pos, ok, err := s.Since(context.Background(), topic, broker.Position{Offset: 1, Epoch: "not-the-epoch"})
	if err != nil || ok || len(msgs) != 0 {
		t.Fatalf("Since(wrong epoch) = %d msgs, recovered %v, err %v; want none, false", len(msgs), ok, err)
	}
	if pos.Offset != 2 || pos.Epoch == "not-the-epoch" {
		t.Fatalf("Since(wrong epoch) position = %+v, want the current one", pos)
	}
}

func testSinceFuture(t *testing.T, newStore Factory) {
	s, _ := setup(t, newStore, Options{})
	topic := topicName(t, s)
	sent := publish(t, s, topic, "1")
	_, _, ok, err := s.Since(context.Background(), topic, broker.Position{Offset: 5, Epoch: sent[0].Epoch})
	if err != nil || ok {
		t.Fatalf("Since(future offset) recovered %v, err %v; want false", ok, err)
	}
}

func testSinceTooOld(t *testing.T, newStore Factory) {
	s, _ := setup(t, newStore, Options{HistorySize: 5})
	topic := topicName(t, s)
	sent := publish(t, s, topic, numbers(12)...)
	if _, _, ok, err := s.Since(context.Background(), topic, broker.Position{Offset: 2, Epoch: sent[0].Epoch}); err != nil || ok {
		t.Fatalf("Since(offset 2) with history 5 of 12: recovered %v, err %v; want false", ok, err)
	}
}

func testHistoryKeepsLast(t *testing.T, newStore Factory) {
	s, _ := setup(t, newStore, Options{HistorySize: 5})
	topic := topicName(t, s)
	sent := publish(t, s, topic, numbers(12)...)
	msgs, _, ok, err := s.Since(context.Background(), topic, broker.Position{Offset: 7, Epoch: sent[0].Epoch})
	if err != nil || !ok || len(msgs) != 5 || msgs[0].Offset != 8 || msgs[4].Offset != 12 {
		t.Fatalf("Since(7) with history 5 of 12: %d msgs, recovered %v, err %v; want offsets 8..12", len(msgs), ok, err)
	}
}

func testRecent(t *testing.T, newStore Factory) {
	s, _ := setup(t, newStore, Options{HistorySize: 5})
	topic := topicName(t, s)
	ctx := context.Background()
	msgs, pos, err := s.Recent(ctx, topic, 3)
	if err != nil || len(msgs) != 0 || pos.Offset != 0 || pos.Epoch == "" {
		t.Fatalf("Recent on a new topic: %d msgs, position %+v, err %v; want none at offset 0 of an epoch", len(msgs), pos, err)
	}
	sent := publish(t, s, topic, numbers(12)...)
	for _, tc := range []struct{ limit, first int }{{3, 10}, {5, 8}, {100, 8}, {0, 13}} {
		msgs, pos, err := s.Recent(ctx, topic, tc.limit)
		if err != nil || pos != (broker.Position{Offset: 12, Epoch: sent[0].Epoch}) {
			t.Fatalf("Recent(%d): position %+v, err %v; want offset 12 of the topic's epoch", tc.limit, pos, err)
		}
		if want := 13 - tc.first; len(msgs) != want {
			t.Fatalf("Recent(%d) with history 5 of 12: %d msgs, want %d", tc.limit, len(msgs), want)
		}
		for i, m := range msgs {
			w := sent[tc.first-1+i]
			if m.Offset != w.Offset || m.ID != w.ID || string(m.Data) != string(w.Data) || m.Topic != topic {
				t.Fatalf("Recent(%d)[%d] = %+v, want %+v", tc.limit, i, m, w)
			}
		}
	}
}

func testTTL(t *testing.T, newStore Factory) {
	const ttl = 300 * time.Millisecond
	s, _ := setup(t, newStore, Options{HistoryTTL: ttl})
	topic := topicName(t, s)
	sent := publish(t, s, topic, "1", "2")
	since := broker.Position{Offset: 0, Epoch: sent[0].Epoch}
	if _, _, ok, err := s.Since(context.Background(), topic, since); err != nil || !ok {
		t.Fatalf("Since right after publishing: recovered %v, err %v; want true", ok, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs, _, ok, err := s.Since(context.Background(), topic, since)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if time.Since(sent[1].Time) < ttl {
				t.Fatalf("history lost messages younger than the TTL")
			}
			return
		}
		if len(msgs) != 2 {
			t.Fatalf("Since replayed %d messages before expiry, want 2", len(msgs))
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages still in history long after the TTL of %v", ttl)
		}
		time.Sleep(20 * time.Millisecond) // polling a clock-driven expiry: there is no event to wait on
	}
}

func testCancelled(t *testing.T, newStore Factory) {
	s, _ := setup(t, newStore, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msg := &broker.Message{ID: uuid.NewString(), Topic: topicName(t, s), Time: time.Now(), Data: json.RawMessage(`1`)}
	if err := s.Publish(ctx, []*broker.Message{msg}); err == nil {
		t.Fatal("Publish with a cancelled context succeeded")
	}
	if _, err := s.Position(ctx, msg.Topic); err == nil {
		t.Fatal("Position with a cancelled context succeeded")
	}
}
